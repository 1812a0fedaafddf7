"""Tests against a 3-node RabbitMQ cluster of their own: marked ``cluster``, run alone.

The cluster takes most of this 2-core machine for a minute or two, so these tests never
run with the rest: ``make test`` deselects them and they are skipped unless
``TEST_CLUSTER_TESTS=1`` (``make cluster-test`` sets it). One cluster serves the whole
session; each test gets a vhost of its own and leaves every node running.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest
from tests.cluster.cluster import Cluster

ENABLED = os.environ.get("TEST_CLUSTER_TESTS") == "1"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.cluster)
            if not ENABLED:
                item.add_marker(pytest.mark.skip(reason="cluster tests: make cluster-test"))


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three joined RabbitMQ nodes on free ports, deleted at the end of the session."""
    nodes = Cluster(tmp_path_factory.mktemp("rabbitmq-cluster"))
    try:
        nodes.start()
        yield nodes
    finally:
        nodes.cleanup()


@pytest.fixture
def cluster_vhost(cluster: Cluster) -> Iterator[str]:
    """A vhost of the test's own on the cluster; every node is running again afterwards."""
    vhost = cluster.add_vhost()
    yield vhost
    for node in sorted(cluster.down):
        asyncio.run(cluster.revive(node))
    cluster.ctl("delete_vhost", vhost)
