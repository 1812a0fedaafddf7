"""The benchmark harness runs end to end on a tiny load (not a benchmark: no figure is judged)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_smoke_run_reports_figures_for_limit_and_smsrelay(tmp_path: Path) -> None:
    """`python -m bench --smoke` drains and paces both pipelines and writes a JSON report with every figure."""
    argv = ["--smoke", "--pipelines", "limit,smsrelay-sqlite", "--out", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-m", "bench", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "results.json").read_text())
    assert {c["pipeline"] for c in report["cells"]} == {"limit", "smsrelay-sqlite"}
    for cell in report["cells"]:
        drain, steady = cell["drain"], cell["steady"]
        assert drain["delivered"] == drain["n"] and drain["duplicates"] == 0
        assert drain["msgs_per_s"] > 0 and drain["cpu_us_per_msg"] > 0
        assert drain["peak_rss_mb"] > 0
        assert steady["delivered"] == steady["published"] and steady["p99_ms"] is not None
    assert (tmp_path / "results.md").read_text().startswith("N = 300")
