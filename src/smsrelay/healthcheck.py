"""``python -m smsrelay.healthcheck``: exit 0 when this container's smsrelay answers /healthz.

For the Dockerfile's HEALTHCHECK: one image runs either the API (``api_port``) or the
worker (``metrics_port``), so it asks both ports and is content with either.
"""

from __future__ import annotations

import os
import sys
import urllib.request


def alive(port: str, timeout: float = 4.0) -> bool:
    """Whether ``127.0.0.1:port/healthz`` answers 200."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=timeout) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def main() -> int:
    """0 when the API or the worker answers, else 1."""
    ports = {os.environ.get("SMSRELAY_API_PORT", "8080"), os.environ.get("SMSRELAY_METRICS_PORT")}
    return 0 if any(alive(port) for port in ports if port and port != "0") else 1


if __name__ == "__main__":
    sys.exit(main())
