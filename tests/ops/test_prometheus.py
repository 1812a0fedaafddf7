"""The alert rules and the Grafana dashboard work against a real Prometheus.

promtool validates and unit-tests the rules; then a real Prometheus scrapes a real
worker and a real API (which have sent, failed over, failed and refused a receipt),
and every dashboard query, recording rule and alert expression is evaluated: none may
error, and each must find data. Skips, saying why, where Prometheus is not installed
(scripts/install-tools.sh installs it on Debian/Ubuntu as root).
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from smsrelay.providers.twilio import twilio_signature
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN
from tests.ops.support import Process, free_port, get, running, wait_until

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "smsrelay.json"
TRANSIENT, REJECTED = "+14155550142", "+14155550199"
# Routed to the loopback Twilio, whose receipt the API settles.
VIA_TWILIO = "+442079460958"

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None or shutil.which("promtool") is None,
    reason="prometheus/promtool not installed (run scripts/install-tools.sh as root)",
)


def rules() -> dict[str, Any]:
    """The rules file, parsed."""
    loaded: dict[str, Any] = yaml.safe_load(RULES.read_text())
    return loaded


def recordings() -> dict[str, str]:
    """Recorded series name → expression."""
    return {r["record"]: r["expr"] for g in rules()["groups"] for r in g["rules"] if "record" in r}


def alerts() -> dict[str, str]:
    """Alert name → expression."""
    return {r["alert"]: r["expr"] for g in rules()["groups"] for r in g["rules"] if "alert" in r}


def dashboard_queries() -> list[str]:
    """Every query of every panel of the dashboard."""
    board = json.loads(DASHBOARD.read_text())
    return [t["expr"] for panel in board["panels"] for t in panel["targets"]]


def test_promtool_accepts_and_unit_tests_the_rules() -> None:
    """`promtool check rules` passes and `promtool test rules` shows each tested alert firing."""
    checked = subprocess.run(
        ["promtool", "check", "rules", str(RULES)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        ["promtool", "test", "rules", "alerts_test.yml"],
        cwd=RULES.parent,
        capture_output=True,
        text=True,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


def query(base: str, expr: str) -> dict[str, Any]:
    """One instant query; the API's JSON answer (errors included)."""
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    status, body = get(url)
    answer: dict[str, Any] = json.loads(body)
    answer["http_status"] = status
    return answer


def selectors(expr: str) -> set[str]:
    """Metric and recorded-series names an expression reads."""
    bare = re.sub(r"\{[^}]*\}", "", expr)  # label matchers hold strings, not names
    return set(re.findall(r"\b(smsrelay[a-z_:0-9]*|up)\b(?!\s*\()", bare))


def exercise(api: str, tmp_path: Path) -> None:
    """Traffic that gives every series data: sent, failed over, failed, a refused receipt."""
    for n, to in enumerate(["+14155550123", TRANSIENT, REJECTED, VIA_TWILIO]):
        body = json.dumps({"id": f"prom-{n}", "to": to, "body": "hi"}).encode()
        request = urllib.request.Request(
            f"{api}/v1/messages",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "X-Api-Key": "k-1"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 202
    receipt = urllib.request.Request(f"{api}/v1/receipts/tw", data=b"MessageSid=x", method="POST")
    try:
        urllib.request.urlopen(receipt, timeout=10)
    except urllib.error.HTTPError as exc:
        assert exc.code == 401  # unsigned: refused, and counted as such


def provider_message_id(api: str, message_id: str) -> str | None:
    """The provider message id of a sent message (None until it is sent)."""
    request = urllib.request.Request(
        f"{api}/v1/messages/{message_id}", headers={"X-Api-Key": "k-1"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        found: str | None = json.loads(answer.read()).get("provider_message_id")
        return found


def deliver(api: str, sid: str) -> None:
    """The loopback Twilio's signed "delivered" callback for ``sid``: the API settles it."""
    url = f"{api}/v1/receipts/tw"
    params = {"MessageSid": sid, "MessageStatus": "delivered", "AccountSid": ACCOUNT_SID}
    signature = twilio_signature(AUTH_TOKEN.encode(), url, sorted(params.items()))
    request = urllib.request.Request(
        url,
        data=urllib.parse.urlencode(params).encode(),
        method="POST",
        headers={"X-Twilio-Signature": signature},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 204


def config_file(
    tmp_path: Path, amqp_url: str, sqlite_url: str, twilio_url: str, api: str
) -> dict[str, str]:
    """A worker and API configuration with failover, a rejecting number and a receipt provider."""
    path = tmp_path / "smsrelay.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "providers": {
                    "primary": {
                        "type": "simulator",
                        "transient_failure_numbers": [TRANSIENT],
                        "permanent_failure_numbers": [REJECTED],
                    },
                    "backup": {"type": "simulator"},
                    "tw": {
                        "type": "twilio",
                        "base_url": twilio_url,
                        "account_sid": ACCOUNT_SID,
                        "auth_token": AUTH_TOKEN,
                        "sender": "+14155550100",
                    },
                },
                "routes": {"GB": ["tw"], "*": ["primary", "backup"]},
                "api_keys": ["k-1"],
                "public_url": api,
                "queue_poll_interval": 0.5,
            }
        )
    )
    return {
        "SMSRELAY_CONFIG": str(path),
        "SMSRELAY_AMQP_URL": amqp_url,
        "SMSRELAY_DATABASE_URL": sqlite_url,
        "SMSRELAY_LOG_FORMAT": "json",
    }


def start_prometheus(tmp_path: Path, targets: dict[str, int]) -> tuple[Process, str]:
    """A Prometheus scraping ``targets`` (job → port) every second, with our rules every second."""
    fast = rules()
    for group in fast["groups"]:
        group["interval"] = "1s"
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(fast))
    (tmp_path / "prometheus.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(tmp_path / "rules.yml")],
                "scrape_configs": [
                    {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
                    for job, port in targets.items()
                ],
            }
        )
    )
    port = free_port()
    process = Process(
        [
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        {},
        tmp_path / "prometheus.log",
        program=["prometheus"],
    )
    return process, f"http://127.0.0.1:{port}"


def test_every_dashboard_query_and_alert_has_data_from_a_real_worker_and_api(
    amqp_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    """Prometheus scraping a real worker and API evaluates every dashboard query, recording and alert without error and with data."""
    worker_port, api_port = free_port(), free_port()
    api = f"http://127.0.0.1:{api_port}"
    twilio = Process(
        ["-m", "tests.fakes.twilio"],
        {"PYTHONPATH": str(ROOT)},
        tmp_path / "twilio.log",
        program=[sys.executable],
    )
    stack = contextlib.ExitStack()
    stack.callback(twilio.stop)
    wait_until(lambda: "listening on" in twilio.log.read_text(), twilio, what="fake Twilio")
    twilio_url = twilio.log.read_text().split("listening on ", 1)[1].split()[0]
    env = config_file(tmp_path, amqp_url, sqlite_url, twilio_url, api)
    worker_env = {**env, "SMSRELAY_METRICS_PORT": str(worker_port)}
    api_env = {**env, "SMSRELAY_API_PORT": str(api_port)}
    with stack, running(["worker"], worker_env, tmp_path / "worker.log") as worker:
        # One process migrates the fresh database first: two at once would race.
        wait_until(lambda: "worker_started" in worker.log.read_text(), worker)
        api_process = stack.enter_context(running(["api"], api_env, tmp_path / "api.log"))
        wait_until(lambda: get(f"{api}/readyz")[0] == 200, api_process, what="api ready")
        exercise(api, tmp_path)
        # prom-2 ends failed: by then every kind of send has happened.
        wait_until(lambda: "message_failed" in worker.log.read_text(), worker)
        wait_until(lambda: provider_message_id(api, "prom-3") is not None, worker, what="sent")
        sid = provider_message_id(api, "prom-3")
        assert sid is not None
        deliver(api, sid)
        prometheus, base = start_prometheus(
            tmp_path, {"smsrelay-worker": worker_port, "smsrelay-api": api_port}
        )
        try:
            # Until it is ready, Prometheus answers 503 in plain text.
            wait_until(lambda: get(f"{base}/-/ready")[0] == 200, prometheus, what="ready")
            expressions = {**recordings(), **{q: q for q in dashboard_queries()}}

            def all_have_data() -> bool:
                return all(query(base, name)["data"]["result"] for name in expressions)

            wait_until(all_have_data, prometheus, seconds=120, what="data for every query")
            for name, expr in expressions.items():
                answer = query(base, expr)
                assert answer["status"] == "success", (name, answer)
                assert answer["data"]["result"], f"no data: {name}"
            for name, expr in alerts().items():
                answer = query(base, expr)
                assert answer["status"] == "success", (name, answer)
                for selector in selectors(expr):
                    assert query(base, selector)["data"]["result"], (
                        f"{name}: no data for {selector}"
                    )
        finally:
            prometheus.stop()
