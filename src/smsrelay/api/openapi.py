"""The API's OpenAPI document, kept as ``docs/openapi.json``.

Regenerate after changing a route or a model::

    python -m smsrelay.api.openapi            # writes docs/openapi.json
    python -m smsrelay.api.openapi --check    # exit 1 if the file is out of date

A test fails while the committed file differs from what the code generates.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from smsrelay.api.app import bare_app

DEFAULT_PATH = Path("docs/openapi.json")


def document() -> dict[str, Any]:
    """The OpenAPI document of the app's routes."""
    return bare_app().openapi()


def render() -> str:
    """The document as it is committed: indented JSON, ending in a newline."""
    return json.dumps(document(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the document, or with ``--check`` report whether the file is current."""
    parser = argparse.ArgumentParser(prog="python -m smsrelay.api.openapi")
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_PATH)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.path.read_text(encoding="utf-8") if args.path.exists() else ""
        if current != text:
            print(
                f"{args.path} is out of date: run python -m smsrelay.api.openapi", file=sys.stderr
            )
            return 1
        return 0
    args.path.write_text(text, encoding="utf-8")
    print(f"wrote {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
