"""``python -m smsrelay``: the same as the ``smsrelay`` command."""

from __future__ import annotations

from smsrelay.cli import main

main()
