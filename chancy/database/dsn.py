"""Finding the database, and describing it without its password.

The DSN is taken from, in order: the ``dsn`` given to chancy, ``CHANCY_DSN``, and last an
embedded PostgreSQL (see :mod:`chancy.embedded`). Plain ``postgresql://`` DSNs are run on
asyncpg; a DSN of another database is refused. Nothing here ever puts a password into a
log line or an error message: servers are described by :func:`describe` (user, host, port
and database only), and a driver's error text (:func:`reason_of`) is shown with every
password chancy knows of (:func:`secrets_of`) masked by :func:`mask_secrets`.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from chancy.errors import ConfigurationError

__all__ = ["DSN_ENV", "describe", "mask_secrets", "reason_of", "resolve_url", "secrets_of"]

DSN_ENV = "CHANCY_DSN"

_DRIVERS = {
    "postgresql",
    "postgres",
    "postgresql+asyncpg",
    "postgresql+psycopg",
    "postgresql+psycopg2",
}


def resolve_url(dsn: str | URL | None = None) -> URL:
    """The asyncpg URL for ``dsn``, else ``CHANCY_DSN``, else the embedded server's."""
    if dsn is None:
        dsn = os.environ.get(DSN_ENV) or None
    if dsn is None:
        from chancy import embedded

        dsn = embedded.start()
    try:
        url = make_url(dsn)
    except ArgumentError as exc:
        raise ConfigurationError(
            "the DSN is not a database URL; use the form "
            "postgresql://user:password@host:5432/database"
        ) from exc
    if url.drivername not in _DRIVERS:
        raise ConfigurationError(
            f"chancy runs on PostgreSQL, not {url.drivername!r}; use a postgresql:// DSN"
        )
    return url.set(drivername="postgresql+asyncpg")


def describe(url: URL) -> str:
    """``user@host:port/database`` for messages: never the password."""
    query_host = url.query.get("host")
    host = url.host or (query_host if isinstance(query_host, str) else None) or "localhost"
    port = url.port or 5432
    user = f"{url.username}@" if url.username else ""
    return f"{user}{host}:{port}/{url.database or ''}"


def secrets_of(url: URL, connect_args: Mapping[str, Any] | None = None) -> set[str]:
    """The passwords in ``url`` (also as ``?password=``) and in ``connect_args``."""
    found = {url.password, url.query.get("password"), (connect_args or {}).get("password")}
    return {str(secret) for secret in found if isinstance(secret, str) and secret}


def mask_secrets(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each of ``secrets`` (as is, and URL-quoted) replaced by ``***``."""
    for secret in secrets:
        for form in {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote(secret)}:
            text = text.replace(form, "***")
    return text


def reason_of(exc: BaseException) -> str:
    """The first line of the driver's (or the server's) words for ``exc``. Not masked: an
    error about connecting may quote what it was given, so mask one before showing it."""
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    # SQLAlchemy's asyncpg adapter prefixes the driver's class: keep the server's words.
    return re.sub(r"^<class '[\w.]+'>: ", "", text)
