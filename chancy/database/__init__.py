"""Chancy's access to PostgreSQL, below the SQL statements of :mod:`chancy.repository`
(internal: not public API).

- :mod:`chancy.database.dsn`: which database (``dsn``, ``CHANCY_DSN``, the embedded
  server) and how to name it without its password.
- :mod:`chancy.database.engine`: engines, the pool's check of closed connections, the
  hot path's connection, the one retry on a dead connection, reachability.
- :mod:`chancy.database.timeouts`: the ``lock_timeout`` and ``statement_timeout`` of
  chancy's statements.

Database errors are turned into chancy's errors where statements run, by
:mod:`chancy.repository.runner`. The names below are re-exported so that ``from
chancy.database import ...`` keeps working; chancy's own modules import from the
submodules.
"""

from __future__ import annotations

from chancy.database.dsn import DSN_ENV, describe, mask_secrets, resolve_url, secrets_of
from chancy.database.engine import check_reachable, create_engine, hot_connection, never_sent
from chancy.database.timeouts import (
    LOCK_TIMEOUT_DEFAULT,
    STATEMENT_TIMEOUT_DEFAULT,
    Timeouts,
    local_timeouts,
    local_timeouts_sync,
)

__all__ = [
    "DSN_ENV",
    "LOCK_TIMEOUT_DEFAULT",
    "STATEMENT_TIMEOUT_DEFAULT",
    "Timeouts",
    "check_reachable",
    "create_engine",
    "describe",
    "hot_connection",
    "local_timeouts",
    "local_timeouts_sync",
    "mask_secrets",
    "never_sent",
    "resolve_url",
    "secrets_of",
]
