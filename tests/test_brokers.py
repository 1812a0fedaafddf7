"""The node list, the first reachable node, and publishing past a nack (smsrelay.brokers)."""

from __future__ import annotations

import asyncio
import socket

import aio_pika
import pytest
from yarl import URL

from smsrelay import brokers, settings
from smsrelay.errors import ConfigError
from tests.private_broker import PrivateBroker, private_broker  # noqa: F401 - a fixture


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_one_url_a_comma_list_or_a_list_all_parse() -> None:
    """A single URL stays one; commas and lists give every node, blanks dropped."""
    one = "amqp://guest:guest@127.0.0.1:5672/"
    assert brokers.parse_urls(one) == (one,)
    assert brokers.parse_urls("amqp://a/, amqp://b/,") == ("amqp://a/", "amqp://b/")
    assert brokers.parse_urls(["amqp://a/", "amqps://b/"]) == ("amqp://a/", "amqps://b/")
    for bad in ("", " , ", "http://a/"):
        with pytest.raises(ValueError):
            brokers.parse_urls(bad)


def test_settings_take_a_yaml_list_of_nodes(monkeypatch: pytest.MonkeyPatch) -> None:
    """amqp_url as a list (YAML or JSON in the variable) is joined; a bad one is refused."""
    monkeypatch.setenv("SMSRELAY_AMQP_URL", '["amqp://u:secret@a/", "amqp://u:secret@b/"]')
    assert settings.load().amqp_url == "amqp://u:secret@a/,amqp://u:secret@b/"
    monkeypatch.setenv("SMSRELAY_AMQP_URL", "amqp://u:secret@a/,http://u:secret@b/")
    with pytest.raises(ConfigError) as caught:
        settings.load()
    assert "secret" not in str(caught.value)
    monkeypatch.delenv("SMSRELAY_AMQP_URL")
    assert settings.load().amqp_url == "amqp://guest:guest@127.0.0.1:5672/"


async def test_connect_skips_a_node_that_does_not_answer(amqp_url: str) -> None:
    """With a dead node first in the list, the connection goes to the one that answers."""
    dead = f"amqp://guest:guest@127.0.0.1:{closed_port()}/"
    for _ in range(4):  # the start node is random: both orders come up
        connection = await brokers.connect([dead, amqp_url])
        async with connection:
            assert connection.url.port != int(dead.rsplit(":", 1)[1].rstrip("/"))
            await connection.channel()


async def test_connect_raises_when_no_node_answers() -> None:
    """No node reachable: the last node's connection error, not a hang."""
    urls = [f"amqp://guest:guest@127.0.0.1:{closed_port()}/" for _ in range(2)]
    with pytest.raises(OSError):
        await brokers.connect(urls, connect_timeout=5)


async def test_a_nacked_publish_is_published_again_on_a_new_channel(amqp_url: str) -> None:
    """After basic.nack the publisher drops its channel and the message gets in on a new one."""
    connection = await brokers.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        # A full queue that rejects publishes: the broker nacks until there is room.
        queue = await channel.declare_queue(
            "full", arguments={"x-max-length": 1, "x-overflow": "reject-publish"}
        )
        publisher = brokers.ConfirmedPublisher(connection, "", deadline=30)
        await publisher.publish(aio_pika.Message(b"1", message_id="first"), "full")
        first_channel = publisher._channel
        second = asyncio.create_task(
            publisher.publish(aio_pika.Message(b"2", message_id="second"), "full")
        )
        for _ in range(600):
            if publisher.nacks:
                break
            await asyncio.sleep(0.05)
        assert publisher._channel is not first_channel
        taken = await queue.get(no_ack=True)
        assert taken.message_id == "first"
        await second
        assert (await queue.get(no_ack=True)).message_id == "second"
        await publisher.close()


async def test_a_connection_reconnects_to_the_next_node_when_its_own_goes_away(
    private_broker: PrivateBroker,  # noqa: F811 - the fixture
    amqp_url: str,
) -> None:
    """Its node's app stopped, a connection over two nodes goes on on the other one."""
    connection = brokers.RotatingConnection(
        (URL(private_broker.url), URL(amqp_url)), 0, reconnect_interval=0.2
    )
    await connection.connect(timeout=10)
    async with connection:
        assert connection.url.port == private_broker.port
        await private_broker.stop_app()
        for _ in range(600):
            if connection.url.port != private_broker.port and connection.connected.is_set():
                break
            await asyncio.sleep(0.1)
        assert connection.url == URL(amqp_url)
        channel = await connection.channel()
        await channel.declare_queue("", exclusive=True)
