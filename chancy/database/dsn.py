"""Finding the database, and describing it without its password.

The DSN is taken from, in order: the ``dsn`` given to chancy, ``CHANCY_DSN``, and last an
embedded PostgreSQL (see :mod:`chancy.embedded`). Plain ``postgresql://`` DSNs are run on
asyncpg; a DSN of another database is refused. Nothing here ever puts a password into a
log line or an error message: servers are described by :func:`describe` (user, host, port
and database only), and a driver's error text (:func:`reason_of`) is shown with every
password chancy knows of (:func:`secrets_of`) masked by :func:`mask_secrets`.

A DSN is checked when chancy is given it (:func:`resolve_url`), so one that could never
connect fails at once with a :class:`ConfigurationError` naming the fix, never a raw
``ValueError`` from deep in a driver: a port from 1 to 65535, an IPv6 address in
brackets, at most one '@' (one in a password is written ``%40``, else parsers split the
DSN inside the password), and only query options asyncpg can take. Those are its
keywords as strings (:data:`KEYWORD_OPTIONS`, such as ``ssl``) and libpq's options that
it reads only from a DSN string (:data:`LIBPQ_OPTIONS`, such as ``sslmode`` and
``sslrootcert``), which :func:`chancy.database.engine.create_engine` hands it as one.
No message quotes a DSN or an option's value.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from chancy.errors import ConfigurationError

__all__ = [
    "DSN_ENV",
    "KEYWORD_OPTIONS",
    "LIBPQ_OPTIONS",
    "SSL_MODES",
    "describe",
    "mask_secrets",
    "reason_of",
    "resolve_url",
    "secrets_of",
]

DSN_ENV = "CHANCY_DSN"

_DRIVERS = {
    "postgresql",
    "postgres",
    "postgresql+asyncpg",
    "postgresql+psycopg",
    "postgresql+psycopg2",
}


_PORT_MAX = 65535
_FORM = "postgresql://user:password@host:5432/database"

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
"""The values of ``sslmode`` (libpq's) and ``ssl`` (asyncpg's) in a DSN."""

KEYWORD_OPTIONS = frozenset(
    {
        "host",
        "port",
        "user",
        "password",
        "passfile",
        "database",
        "ssl",
        "target_session_attrs",
        "krbsrvname",
        "gsslib",
        "service",
        "servicefile",
        "prepared_statement_cache_size",
    }
)
"""Query options SQLAlchemy hands asyncpg as keyword arguments, which take strings (and
``prepared_statement_cache_size``, SQLAlchemy's own)."""

LIBPQ_OPTIONS = frozenset(
    {
        "dbname",
        "sslmode",
        "sslcert",
        "sslkey",
        "sslrootcert",
        "sslcrl",
        "sslpassword",
        "sslnegotiation",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
        "application_name",
        "connect_timeout",
    }
)
"""libpq's query options that asyncpg reads only from a DSN string (``connect_timeout``
becomes its ``timeout``); as keywords they would fail every connection."""

_MULTIPLE = frozenset({"host", "port"})  # host=h1:5432&host=h2:5432: several servers


def resolve_url(dsn: str | URL | None = None) -> URL:
    """The asyncpg URL for ``dsn``, else ``CHANCY_DSN``, else the embedded server's;
    :class:`ConfigurationError` for a DSN that could never connect (see the module)."""
    if dsn is None:
        dsn = os.environ.get(DSN_ENV) or None
    if dsn is None:
        from chancy import embedded

        dsn = embedded.start()
    if isinstance(dsn, str) and dsn.count("@") > 1:
        raise _unencoded_at()
    try:
        url = make_url(dsn)
    except ArgumentError as exc:
        raise ConfigurationError(f"the DSN is not a database URL; use the form {_FORM}") from exc
    except ValueError:  # SQLAlchemy's int() of the port
        raise ConfigurationError(
            "the DSN's host and port do not parse: the port is a number from 1 to 65535, "
            "an IPv6 address goes in brackets (postgresql://user@[::1]:5432/database), "
            "and several hosts go in the query (?host=h1:5432&host=h2:5432)"
        ) from None
    if url.drivername not in _DRIVERS:
        raise ConfigurationError(
            f"chancy runs on PostgreSQL, not {url.drivername!r}; use a postgresql:// DSN"
        )
    _check_server(url)
    _check_options(url)
    return url.set(drivername="postgresql+asyncpg")


def _unencoded_at() -> ConfigurationError:
    return ConfigurationError(
        "the DSN has more than one '@', so it would be split inside the password (or the "
        "user name): write every '@' but the one before the host as %40 "
        f"(urllib.parse.quote(password, safe='') encodes a password), as in {_FORM}"
    )


def _check_server(url: URL) -> None:
    """The host and port of ``url`` are ones a connection could use."""
    if url.host and "@" in url.host:
        raise _unencoded_at()
    if url.host and ":" in url.host:
        try:
            ipaddress.IPv6Address(url.host)
        except ValueError:
            raise ConfigurationError(
                "the DSN's host is in brackets but is not an IPv6 address; write an IPv6 "
                "address as [::1], and a host name without brackets"
            ) from None
    ports: list[str] = [] if url.port is None else [str(url.port)]
    for key, values in url.query.items():
        if key in _MULTIPLE:
            for value in (values,) if isinstance(values, str) else values:
                ports += value.split(",") if key == "port" else _query_host_ports(value)
    for port in ports:
        if not (port.isdigit() and 1 <= int(port) <= _PORT_MAX):
            raise ConfigurationError(
                "the DSN's port must be a number from 1 to 65535 (PostgreSQL's is 5432)"
            )


def _query_host_ports(value: str) -> list[str]:
    """The ports of ``?host=h1:5432,h2:5433`` (a socket directory has none)."""
    return [host.rpartition(":")[2] for host in value.split(",") if ":" in host]


def _check_options(url: URL) -> None:
    """Each query option of ``url`` is one asyncpg takes, given once, with a value it
    accepts; no message shows a value."""
    for key, value in url.query.items():
        if key not in KEYWORD_OPTIONS | LIBPQ_OPTIONS:
            raise ConfigurationError(
                f"the DSN option {_option_name(key)} is not one chancy's driver, asyncpg, "
                "takes; remove it, or pass it in Chancy(engine_options={'connect_args': "
                "{...}}) (asyncpg's connect() arguments; settings of the server go in "
                "'server_settings': {...})"
            )
        if not isinstance(value, str) and key not in _MULTIPLE:
            raise ConfigurationError(f"the DSN gives the option {key!r} more than once")
        if key in ("sslmode", "ssl") and value not in SSL_MODES:
            raise ConfigurationError(
                f"the DSN's {key} must be one of {', '.join(SSL_MODES)} (such as ?{key}=require)"
            )
    timeout = url.query.get("connect_timeout")
    if timeout is not None and not _positive(timeout):
        raise ConfigurationError(
            "the DSN's connect_timeout must be a positive number of seconds, such as "
            "?connect_timeout=10"
        )
    cache = url.query.get("prepared_statement_cache_size")
    if cache is not None and not (isinstance(cache, str) and cache.isdigit()):
        raise ConfigurationError(
            "the DSN's prepared_statement_cache_size must be a whole number (0: none)"
        )


def _option_name(key: str) -> str:
    """``key`` quoted, unless it is not a word (then it may be a piece of a password)."""
    return repr(key) if re.fullmatch(r"\w{1,64}", key) else "(a name that is not a word)"


def _positive(value: object) -> bool:
    try:
        seconds = float(str(value))
    except ValueError:
        return False
    return math.isfinite(seconds) and seconds > 0


def describe(url: URL) -> str:
    """``user@host:port/database`` for messages: never the password. A URL parsed from a
    DSN whose password held an unencoded '@' has a piece of it before an '@' in its host
    (or database): then only what follows the last '@' is shown, and no user."""
    query_host = url.query.get("host")
    host = url.host or (query_host if isinstance(query_host, str) else None) or "localhost"
    database = url.database or ""
    port = url.port or 5432
    if "@" in host or "@" in database:
        return f"{host.rpartition('@')[2]}:{port}/{database.rpartition('@')[2]}"
    user = f"{url.username}@" if url.username else ""
    return f"{user}{host}:{port}/{database}"


def secrets_of(url: URL, connect_args: Mapping[str, Any] | None = None) -> set[str]:
    """The passwords in ``url`` (also as ``?password=`` and ``?sslpassword=``) and in
    ``connect_args``; and, where an unencoded '@' split a password, the pieces of it
    that ended up in the host or the database."""
    found = {
        url.password,
        url.query.get("password"),
        url.query.get("sslpassword"),
        (connect_args or {}).get("password"),
    }
    for part in (url.host, url.database):
        if part and "@" in part:
            piece = part.rpartition("@")[0]
            found |= {piece, f"{url.password}@{piece}" if url.password else None}
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
