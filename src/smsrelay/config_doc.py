"""The configuration reference (docs/configuration.md), generated from the settings models.

Keys, types and defaults come from the pydantic models themselves; what each key
means and an example are written here, once. A test regenerates the document and
compares it with the file, and fails when a key has no description: a new setting
cannot ship undocumented, and the reference cannot go stale.

Regenerate with ``smsrelay config reference > docs/configuration.md``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from smsrelay.providers import REGISTRY, ProviderSettings, provider_class
from smsrelay.settings import Settings

# Health, limits and caps are built but the worker does not use them yet (README).

# key → (what it means, an example value as YAML would show it)
DESCRIPTIONS: dict[str, tuple[str, str]] = {
    "amqp_url": (
        "The RabbitMQ broker, with user, password and vhost.",
        "amqp://sms:pw@rabbit:5672/sms",
    ),
    "database_url": (
        "The store: SQLite (`sqlite+aiosqlite:///file.db`) or PostgreSQL "
        "(`postgresql+asyncpg://…`; plain `postgresql://` is refused).",
        "postgresql+asyncpg://sms:pw@db:5432/sms",
    ),
    "prefetch": ("Sends in flight at once per worker (the AMQP prefetch).", "300"),
    "grace_period": ("Seconds a stopping worker gives in-flight sends to finish.", "20"),
    "retention_days": ("Records older than this are purged, daily, by the worker.", "30"),
    "log_format": ("`json` (production), `console`, or `auto` (console on a terminal).", "json"),
    "log_level": ("Least level logged: `debug`, `info`, `warning`, `error`.", "info"),
    "retry": ("Delayed retries after every provider of a route failed transiently.", ""),
    "retry.max_attempts": ("Retry rounds before a message is `failed`.", "5"),
    "retry.delays": (
        "Seconds before the n-th retry round (the last one repeats); one queue each.",
        "[5, 30, 120, 600]",
    ),
    "retry.jitter": ("Random spread of each delay, as a fraction (0 to 0.5).", "0.2"),
    "resend": ("Receipt-deadline resends of OTPs with `resend_after` (README).", ""),
    "resend.max_resends": (
        "Resends of one OTP at most, each through the route's next provider; 0: none.",
        "1",
    ),
    "providers": (
        "Provider name → its settings (below); `type` defaults to the name.",
        "{twilio: {account_sid: AC…, auth_token: …, sender: '+14155550100'}}",
    ),
    "routes": (
        "Destination → ordered provider names. A destination is a `+prefix`, an ISO country "
        "(`GB`) or `*` (required); the longest prefix wins, then the country, then `*`. "
        'An empty list routes nothing there: `{"*": [], "GB": [twilio]}` sends to the UK only '
        "(messages to elsewhere end `failed`).",
        '{"+4420": [backup], US: [twilio, backup], "*": [twilio]}',
    ),
    "api_keys": (
        "Keys accepted by `/v1/messages` (none: every call is refused). In the environment, "
        "comma-separated: `SMSRELAY_API_KEYS=abc,def`.",
        "[k-3f9a…, k-81c2…]",
    ),
    "api_host": ("Address `smsrelay api` listens on.", "0.0.0.0"),
    "api_port": ("Port `smsrelay api` listens on.", "8080"),
    "public_url": (
        "The base URL providers call for receipts; receipt signatures sign it.",
        "https://sms.example.com",
    ),
    "metrics_port": (
        "Port of the operations endpoints (`/metrics`, `/healthz`, `/readyz`) of `smsrelay "
        "worker`; 0 turns them off. `smsrelay api` serves them on `api_port`.",
        "9464",
    ),
    "metrics_host": ("Address the worker's operations endpoints listen on.", "0.0.0.0"),
    "queue_poll_interval": (
        "Seconds between reads of the queues' depth and consumers from the broker (metrics).",
        "15",
    ),
    "api_limits": ("Limits on what one HTTP client may cost `smsrelay api`.", ""),
    "api_limits.header_timeout": (
        "Seconds a client has to send its request headers; slower connections are closed.",
        "5",
    ),
    "api_limits.body_timeout": (
        "Seconds a client has, after its headers, to send its body; then it is closed.",
        "10",
    ),
    "api_limits.max_body_bytes": (
        "The largest request body on any route (`/v1/messages` has its own 64 KiB); beyond it 413.",
        "1048576",
    ),
    "api_limits.body_budget_bytes": (
        "Request bodies held in memory at once, all requests together; beyond it 503 "
        "with `Retry-After`.",
        "16777216",
    ),
    "api_limits.max_connections": (
        "Connections and requests at once; beyond it uvicorn answers 503.",
        "1000",
    ),
    "prices": ("Price tables in config form (`smsrelay prices` keeps them in the store).", ""),
    "prices.max_age_days": (
        "A price in effect for longer than this is flagged stale (a warning at start, "
        "`smsrelay_stale_prices`, `prices list`).",
        "180",
    ),
    "prices.providers": (
        "Provider → destination (ISO country or `+prefix`) → price per part (with "
        "`currency`, optional `effective_from`).",
        "{twilio: {currency: USD, destinations: {US: '0.0079', GB: '0.0400'}}}",
    ),
    "digest_key": (
        "Secret keying request digests, the same on every API and worker: with it an OTP's "
        "code counts in its digest, so a reused id with a new code is refused.",
        "9c1f…",
    ),
    "health": (
        "Delivery health windows and circuit breakers per provider x country (each worker).",
        "",
    ),
    "health.receipt_poll_interval": (
        "Seconds between a worker's reads of the receipts every process applied (the store).",
        "2",
    ),
    "health.alerts": (
        "Alerts on `sms.alerts` (`sms.alert.<type>`), the metric and log line: thresholds.",
        "",
    ),
    "health.alerts.publish": ("Publish to `sms.alerts` (the metric and log always).", "true"),
    "health.alerts.window": ("Seconds of recent receipts compared with the baseline.", "300"),
    "health.alerts.min_samples": ("Receipts the recent window needs before it can alert.", "20"),
    "health.alerts.drop": (
        "`delivery_drop` when the recent rate is this far below the key's baseline (relative).",
        "0.3",
    ),
    "health.alerts.latency_rise": (
        "`latency_rise` when the recent receipt p50 is this many times its baseline.",
        "2.0",
    ),
    "health.alerts.min_latency": ("A `latency_rise` needs a p50 of at least these seconds.", "5"),
    "health.alerts.cool_down": ("Seconds between alerts of one type, provider, country.", "900"),
    "health.report_interval": (
        "Seconds between a worker's recomputations of the delivery report's metrics.",
        "60",
    ),
    "health.metrics_max_keys": (
        "Provider x country keys with their own delivery series; the rest are `other`.",
        "50",
    ),
    "health.receipt_deadline": (
        "Seconds after which a send without a final receipt counts as not delivered, for "
        "providers that send receipts; null: never.",
        "900",
    ),
    "health.window": ("The sliding window of send outcomes and receipts.", ""),
    "health.window.seconds": ("Seconds of history in the delivery window.", "600"),
    "health.window.bucket_seconds": ("Width of one bucket of the window, in seconds.", "30"),
    "health.window.prior_rate": ("Delivery rate assumed before any receipt (Beta prior).", "0.9"),
    "health.window.prior_weight": ("How many receipts the prior is worth.", "10"),
    "health.window.max_keys": ("Provider x country keys kept at most (memory bound).", "4096"),
    "health.breakers": ("Circuit breakers per provider x country.", ""),
    "health.breakers.failures": ("Consecutive transport failures that open a breaker.", "5"),
    "health.breakers.timeouts": ("Consecutive timeouts that open a breaker.", "2"),
    "health.breakers.cool_down": ("Seconds a breaker stays open before probing.", "30"),
    "health.breakers.probes": ("Sends let through at once while half-open.", "1"),
    "health.breakers.min_samples": (
        "Receipts in the delivery window before a delivery collapse can open a breaker.",
        "30",
    ),
    "health.breakers.min_delivery_rate": (
        "A delivered share below this (with enough samples) opens the breaker.",
        "0.5",
    ),
    "health.breakers.max_drop": (
        "A delivered share this far below the key's own baseline opens the breaker.",
        "0.5",
    ),
    "health.breakers.delivery_window": ("Seconds of receipts judged for a collapse.", "120"),
    "health.breakers.baseline_seconds": ("Seconds the baseline delivery rate averages.", "3600"),
    "health.breakers.delivery_cool_down": ("Seconds open after a delivery collapse.", "120"),
    "redis_url": (
        "Redis shared by every worker for rate limits, spend caps and the pumping guard; "
        "none: in-process. While it is unreachable each worker uses a local share "
        "(`limits.expected_workers`) and the guard counts in-process.",
        "redis://127.0.0.1:6379/0",
    ),
    "limits": ("How rate limits wait, lease tokens, keep a share for OTP and fall back.", ""),
    "limits.expected_workers": ("The share each worker takes while Redis is unreachable.", "2"),
    "limits.lease_seconds": ("How long leased tokens live in a worker (sets the batch).", "0.1"),
    "limits.max_wait": ("Seconds a send waits for a token before it moves on.", "1.0"),
    "limits.retry_seconds": ("How long the local fallback lasts before Redis is tried.", "5"),
    "limits.redis_timeout": ("Seconds before a Redis call counts as failed.", "0.5"),
    "limits.redis_prefix": ("Prefix of every Redis key written.", "smsrelay:"),
    "limits.cap_sync_seconds": (
        "How stale a worker's reading of the shared spend counters may be, and how often it "
        "adds its spending to them; near a cap every send reads and writes Redis. "
        "0: every send does.",
        "0.2",
    ),
    "limits.otp_share": (
        "The share of each provider's rate limit kept for OTP messages: other kinds send at "
        "most (1 - share) of it, OTP may use all of it. 0: one bucket for every kind.",
        "0.2",
    ),
    "spend_caps": (
        "Spend caps per day and month, overall, per provider, per country; a provider at "
        "its cap is left out of the plan.",
        "",
    ),
    "spend_caps.currency": ("The currency of every cap (amounts are not converted).", "USD"),
    "spend_caps.total": ("The overall caps (`day`, `month`).", "{day: 500, month: 10000}"),
    "spend_caps.total.day": ("Overall spend per UTC day.", "500"),
    "spend_caps.total.month": ("Overall spend per calendar month.", "10000"),
    "spend_caps.providers": ("Provider → its caps (`day`, `month`).", "{twilio: {day: 300}}"),
    "spend_caps.countries": ("ISO country → its caps (`day`, `month`).", "{IN: {day: 50}}"),
    "otp_prefetch": (
        "OTP-lane (`sms.otp`) deliveries in flight at once per worker, on their own channel.",
        "50",
    ),
    "verification": ("Codes smsrelay generates and checks (`POST /v1/verifications`).", ""),
    "verification.key": (
        "Secret keying the hashes of verification codes, the same on every API process "
        "(kept out of the database); unset: `digest_key`; neither: verifications answer 503.",
        "5b0e…",
    ),
    "verification.max_attempts": (
        "Checks of one code before it answers `too_many_attempts`.",
        "5",
    ),
    "verification.resend_cooldown": (
        "Seconds before a number with an open verification may be sent a new code.",
        "30",
    ),
    "verification.max_sends_per_number": (
        "Codes sent to one number per `window_seconds`, all its verifications together.",
        "5",
    ),
    "verification.window_seconds": ("The window of `max_sends_per_number`, in seconds.", "3600"),
    "geo": ("Destination countries permitted, for every message and for OTPs.", ""),
    "geo.all": ("Countries for every message.", ""),
    "geo.all.allow": (
        "ISO countries: a non-empty list permits only these (code `geo-all-allow`).",
        "[US, GB]",
    ),
    "geo.all.deny": ("ISO countries refused (code `geo-all-deny`).", "[KP]"),
    "geo.otp": ("Countries for `kind: otp` messages, on top of `geo.all`.", ""),
    "geo.otp.allow": ("A non-empty list permits OTPs only to these.", "[US, GB, DE]"),
    "geo.otp.deny": ("Countries OTPs are never sent to (code `geo-otp-deny`).", "[XK]"),
    "guard": (
        "Pumping protection for `kind: otp` messages (velocity, budget, conversion blocks).",
        "",
    ),
    "guard.mode": (
        "`off`; `monitor`: decide and record, send anyway; `enforce`: a refused OTP ends "
        "`rejected` with code `guard-<rule>` and is never sent.",
        "monitor",
    ),
    "guard.prefix_digits": (
        "A number's prefix is its E.164 form without this many last digits.",
        "4",
    ),
    "guard.window": ("Seconds of the prefix and country windows and the conversion rule.", "3600"),
    "guard.bucket": ("Seconds per counter bucket: windows slide by whole buckets.", "60"),
    "guard.baseline_windows": ("Past windows a prefix's or country's baseline averages.", "24"),
    "guard.number": ("OTPs to one number (`guard-velocity-number`).", "{limit: 5, window: 600}"),
    "guard.number.limit": ("OTPs to one number per `window` at most; null: no limit.", "5"),
    "guard.number.window": ("Seconds of the per-number window.", "600"),
    "guard.prefix": (
        "OTPs and cost per prefix per `guard.window` (`guard-velocity-prefix`, "
        "`guard-budget-prefix`).",
        "",
    ),
    "guard.prefix.floor": (
        "The per-prefix limit is max(floor, factor x baseline); null: no velocity limit.",
        "50",
    ),
    "guard.prefix.factor": ("How far above its baseline a prefix may go.", "3.0"),
    "guard.prefix.exempt_conversion": (
        "A prefix whose judged conversion is at least this passes its velocity limit "
        "(a surge that converts is people logging in); null: never.",
        "0.5",
    ),
    "guard.prefix.budget": (
        "Estimated cost (parts x price of the first planned provider) per prefix per "
        "window at most; null: none.",
        "20.00",
    ),
    "guard.prefix.currency": (
        "The budget's currency; prices in another one are not counted.",
        "EUR",
    ),
    "guard.country": ("OTPs per country per `guard.window` (`guard-velocity-country`).", ""),
    "guard.country.floor": (
        "The per-country limit is max(floor, factor x baseline); null (default): none.",
        "5000",
    ),
    "guard.country.factor": ("How far above its baseline a country may go.", "5.0"),
    "guard.conversion": (
        "Block a prefix whose volume rises while its conversion falls (`guard-conversion`).",
        "",
    ),
    "guard.conversion.enabled": ("Whether the conversion rule runs.", "true"),
    "guard.conversion.min_judged": (
        "OTPs older than `grace` (since the last block) needed to judge a prefix.",
        "20",
    ),
    "guard.conversion.grace": ("Seconds an OTP has to be used before it is judged.", "60"),
    "guard.conversion.min_conversion": ("A judged conversion below this blocks.", "0.2"),
    "guard.conversion.rise": (
        "...while the window's volume is at least this x the prefix's baseline.",
        "2.0",
    ),
    "guard.conversion.cooldown": ("Seconds of the first block; doubled on each repeat.", "900"),
    "guard.conversion.max_cooldown": ("The longest block, in seconds.", "43200"),
    "guard.conversion.memory": ("Seconds a block is remembered as a repeat.", "604800"),
    # Keys every provider takes (ProviderSettings).
    "provider.encoding": (
        "`smart`: fold look-alike characters (curly quotes, dashes…) to GSM-7 for this "
        "provider; a request's `encoding` wins.",
        "smart",
    ),
    "provider.retry_unknown_outcome": (
        "When a request left and no answer came, may the message be tried again (next "
        "provider, later round)? Each such retry is flagged `possible_duplicate`.",
        "false",
    ),
    "provider.rate_limit": (
        "Sends per second to this provider, all workers together "
        "(`per_second`, `burst`, `per_sender`); see `limits`.",
        "{per_second: 100, burst: 100}",
    ),
    "provider.type": ("The provider type (one of the sections below).", "twilio"),
    "provider.base_url": (
        "Override of the provider's API address (tests, regional endpoints).",
        "",
    ),
    "provider.timeout": ("Seconds before a provider request counts as failed (transient).", "10"),
    "provider.max_connections": ("Open HTTP connections to the provider at most.", "1000"),
    "provider.sender": ("Default sender: a number or an alphanumeric id.", "'+14155550100'"),
}

SECRET_HINT = "secret: `config show` masks it"


def render() -> str:
    """The whole reference as Markdown."""
    parts = [_HEADER, _table(Settings, prefix="", env="SMSRELAY_"), _PROVIDERS]
    parts.append(_table(ProviderSettings, prefix="provider.", env=None))
    for type_name in sorted(REGISTRY):
        parts.append(_provider_section(type_name))
    return "\n".join(parts)


def undocumented() -> list[str]:
    """Settings keys without a description (the reference test fails on any)."""
    keys = [key for key, _ in _fields(Settings, "")] + [
        key for key, _ in _fields(ProviderSettings, "provider.")
    ]
    return [key for key in keys if key not in DESCRIPTIONS]


def _fields(model: type[BaseModel], prefix: str) -> list[tuple[str, FieldInfo]]:
    out: list[tuple[str, FieldInfo]] = []
    for name, info in model.model_fields.items():
        out.append((prefix + name, info))
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out.extend(_fields(annotation, f"{prefix}{name}."))
    return out


def _table(model: type[BaseModel], prefix: str, env: str | None) -> str:
    head = "| key | type | default | environment | meaning | example |"
    rows = [head, "|---|---|---|---|---|---|"]
    for key, info in _fields(model, prefix):
        meaning, example = DESCRIPTIONS.get(key, ("", ""))
        variable = f"`{env}{key.upper().replace('.', '__')}`" if env else ""
        rows.append(
            f"| `{key}` | {_type(info)} | {_default(info)} | {variable} | {meaning} "
            f"| {_code(example)} |"
        )
    return "\n".join(rows) + "\n"


def _provider_section(type_name: str) -> str:
    settings_class = provider_class(type_name).settings_class
    doc = " ".join((settings_class.__doc__ or "").split()).replace("``", "`")
    rows = [f"### `{type_name}`\n", doc, "", "| key | type | default |", "|---|---|---|"]
    common = set(ProviderSettings.model_fields)
    for name, info in settings_class.model_fields.items():
        if name in common:
            continue
        secret = f" ({SECRET_HINT})" if "Secret" in _type(info) else ""
        rows.append(f"| `{name}` | {_type(info)}{secret} | {_default(info)} |")
    return "\n".join(rows) + "\n"


def _type(info: FieldInfo) -> str:
    text = str(info.annotation).replace("typing.", "").replace("pydantic.types.", "")
    # Annotated[float, FieldInfo(...)] → float: the constraints are the models' business.
    text = re.sub(r"Annotated\[([^,\[\]]+), FieldInfo\(.*?\)\]", r"\1", text)
    if "Discriminator(" in text:
        # A tagged union of forms (routes: a list or a mapping): name the forms only.
        text = _forms(text)
    text = text.replace("<class '", "").replace("'>", "")
    text = text.replace("smsrelay.settings.", "")
    return f"`{text}`".replace("|", "\\|")


def _forms(text: str) -> str:
    forms = re.findall(r"Annotated\[([\w.]+(?:\[[\w., ]*\])?), Tag\(tag='\w+'\)\]", text)
    union = " | ".join(kind.rsplit(".", 1)[-1] for kind in forms)
    return re.sub(r"Annotated\[Union\[.*$", f"{union}]", text)


def _default(info: FieldInfo) -> str:
    if info.default is PydanticUndefined and info.default_factory is None:
        return "**required**"
    value: Any = info.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "(below)"
    return _code(json.dumps(value, default=str))


def _code(text: str) -> str:
    return f"`{text}`".replace("|", "\\|") if text else ""


_HEADER = """# Configuration reference

<!-- Generated by `smsrelay config reference` from src/smsrelay/config_doc.py and the
settings models; tests/ops/test_config.py fails when this file is stale. Do not edit. -->

smsrelay reads a YAML file (`--config FILE` or `SMSRELAY_CONFIG`), then overlays
`SMSRELAY_*` environment variables: nested keys join with `__`
(`SMSRELAY_RETRY__MAX_ATTEMPTS=3`), values are JSON when they parse as JSON, and a list
may be given comma-separated (`SMSRELAY_API_KEYS=abc,def`). `smsrelay config check`
reports every problem at once; `smsrelay config show` prints the effective
configuration with secrets masked.

## Top-level keys
"""

_PROVIDERS = """## Providers

Each entry of `providers` is one provider: `type` picks the implementation (it defaults
to the entry's name), and these keys apply to every type:
"""
