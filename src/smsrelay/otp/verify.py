"""Verification codes: generate, hash, check, and the rules of a verification.

A code is drawn with ``secrets`` and never kept: the store holds
HMAC-SHA256(key, salt ‖ code) with a random 16-byte salt per code. ``key`` is the
``verification_key`` setting, which lives in configuration, not in the database. Codes are
short (10⁴ to 10¹⁰ values), so a salted hash alone could be inverted offline in seconds;
the key is what bounds offline guessing: a copy of the database without it tells
nothing about any code. Online guessing is bounded by the attempts per verification
(default 5) and the verifications per number per window. Comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

MIN_LENGTH = 4
MAX_LENGTH = 10
SALT_BYTES = 16

# Built-in message templates per locale; ``{code}`` is replaced by the code.
TEMPLATES: dict[str, str] = {
    "en": "Your verification code is {code}",
    "fr": "Votre code de vérification est {code}",
    "de": "Ihr Bestätigungscode lautet {code}",
    "es": "Tu código de verificación es {code}",
    "pt": "O seu código de verificação é {code}",
    "it": "Il tuo codice di verifica è {code}",
}
CODE_PLACEHOLDER = "{code}"
MAX_TEMPLATE_CHARS = 300


class VerificationStatus(StrEnum):
    """Where a verification stands (stored)."""

    PENDING = "pending"
    APPROVED = "approved"


class CheckResult(StrEnum):
    """The answer to one check of a code."""

    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    TOO_MANY_ATTEMPTS = "too_many_attempts"


def generate_code(length: int) -> str:
    """``length`` decimal digits from the operating system's CSPRNG."""
    if not MIN_LENGTH <= length <= MAX_LENGTH:
        raise ValueError(f"code length must be {MIN_LENGTH}..{MAX_LENGTH}")
    return f"{secrets.randbelow(10**length):0{length}d}"


def new_salt() -> bytes:
    """A fresh random salt for one code."""
    return secrets.token_bytes(SALT_BYTES)


def hash_code(key: bytes, salt: bytes, code: str) -> bytes:
    """HMAC-SHA256 of the salted code under the server's key."""
    return hmac.new(key, salt + code.encode(), hashlib.sha256).digest()


def code_matches(key: bytes, salt: bytes, stored: bytes, code: str) -> bool:
    """True when ``code`` hashes to ``stored``; compared in constant time."""
    return hmac.compare_digest(hash_code(key, salt, code), stored)


def render(code: str, template: str | None, locale: str | None) -> str:
    """The message body: the caller's template, else the locale's, else English."""
    if template is None:
        template = TEMPLATES.get((locale or "en").split("-")[0].lower(), TEMPLATES["en"])
    return template.replace(CODE_PLACEHOLDER, code)


@dataclass(frozen=True, slots=True)
class Verification:
    """One verification as stored: never the code, only its salted keyed hash."""

    id: str
    to: str
    country: str
    status: VerificationStatus
    attempts: int
    max_attempts: int
    sends: int
    message_id: str
    created_at: datetime
    expires_at: datetime
    last_sent_at: datetime
