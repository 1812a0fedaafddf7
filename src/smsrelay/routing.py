"""The routing table: a destination → the ordered providers to try.

Rules are keyed by number prefix (``+4420``), by country (``GB``, from phonenumbers)
or ``*``. The longest matching prefix wins, then the country, then ``*``. Within a
rule, providers are tried in order; failover walks the list.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from smsrelay.models import SendRequest


@dataclass(frozen=True)
class Router:
    """Resolves a request to the ordered provider names to try."""

    routes: Mapping[str, Sequence[str]]

    def route(self, request: SendRequest) -> list[str]:
        """Providers for ``request``, most preferred first."""
        prefixes = [k for k in self.routes if k.startswith("+") and request.to.startswith(k)]
        if prefixes:
            return list(self.routes[max(prefixes, key=len)])
        if request.country in self.routes:
            return list(self.routes[request.country])
        return list(self.routes["*"])
