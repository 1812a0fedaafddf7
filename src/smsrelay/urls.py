"""Connection URLs as a person may see them: password masked, and the parts errors name."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (safe to log or print)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def where(url: str) -> str:
    """``host:port`` of a network URL, for messages."""
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port}" if parts.port else parts.hostname or ""


def vhost(url: str) -> str:
    """The AMQP virtual host a URL names (``/`` when it names none)."""
    path = urlsplit(url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def user(url: str) -> str:
    """The user a URL logs in as (``guest`` when it names none, as RabbitMQ assumes)."""
    return unquote(urlsplit(url).username or "guest")


def database_name(url: str) -> str:
    """The database a SQLAlchemy URL names."""
    return urlsplit(url).path.lstrip("/")


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite…:///path`` URL (None for in-memory or other backends)."""
    if not url.startswith("sqlite"):
        return None
    path = url.split(":///", 1)[1] if ":///" in url else ""
    path = path.split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def with_vhost(url: str, name: str) -> str:
    """``url`` naming the virtual host ``name`` instead."""
    return urlunsplit(urlsplit(url)._replace(path="/" + quote(name, safe="")))
