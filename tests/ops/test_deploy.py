"""The deployment files hold together: Dockerfile, compose.yaml, systemd units, healthcheck.

Docker itself is not available on the test machine (no daemon), so these check what
can be checked without it; tests/ops/test_prometheus.py covers the Prometheus files.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.ops.support import free_port, get, running, wait_until

ROOT = Path(__file__).resolve().parents[2]
UNITS = sorted((ROOT / "deploy" / "systemd").glob("*.service"))


def test_dockerfile_runs_as_non_root_with_a_healthcheck() -> None:
    """The final stage switches to a non-root user, has a HEALTHCHECK, and copies only files that exist."""
    text = (ROOT / "Dockerfile").read_text()
    final = text[text.rindex("\nFROM ") :]
    users = re.findall(r"^USER\s+(\S+)", final, re.MULTILINE)
    assert users and users[-1] not in {"0", "root"}
    assert "HEALTHCHECK" in final and "smsrelay.healthcheck" in final
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.MULTILINE):
        for path in source.split():
            assert (ROOT / path).exists(), path


def test_compose_mounts_exist_and_every_service_is_there() -> None:
    """compose.yaml starts broker, database, migrate, worker, API, Prometheus and Grafana; its mounts exist."""
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    expected = {"rabbitmq", "postgres", "migrate", "worker", "api", "prometheus", "grafana"}
    assert set(services) == expected
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), (name, source)
    scraped = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = {
        t for job in scraped["scrape_configs"] for c in job["static_configs"] for t in c["targets"]
    }
    assert targets == {"api:8080", "worker:9464"}


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize("unit", UNITS, ids=[u.name for u in UNITS])
def test_systemd_unit_verifies(unit: Path, tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts each unit (pointed at this checkout's smsrelay)."""
    for each in UNITS:
        binary = str(Path(sys.executable).parent / "smsrelay")
        (tmp_path / each.name).write_text(
            each.read_text().replace("/opt/smsrelay/bin/smsrelay", binary)
        )
    done = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / unit.name)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    problems = [
        line for line in done.stderr.splitlines() if unit.stem in line or "error" in line.lower()
    ]
    assert done.returncode == 0 and not problems, done.stderr


def test_healthcheck_passes_against_a_live_worker_and_fails_without_one(
    amqp_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    """`python -m smsrelay.healthcheck` exits 0 while the worker answers /healthz, 1 when nothing does."""
    port = free_port()
    env = {
        "SMSRELAY_AMQP_URL": amqp_url,
        "SMSRELAY_DATABASE_URL": sqlite_url,
        "SMSRELAY_METRICS_PORT": str(port),
        "SMSRELAY_API_PORT": str(free_port()),
    }
    check = [sys.executable, "-m", "smsrelay.healthcheck"]
    with running(["worker"], env, tmp_path / "worker.log") as worker:
        wait_until(lambda: get(f"http://127.0.0.1:{port}/healthz")[0] == 200, worker)
        assert subprocess.run(check, env=env, timeout=30).returncode == 0
    assert subprocess.run(check, env=env, timeout=30).returncode == 1
