"""Running chancy's Alembic migrations from code: upgrade, downgrade, current, SQL.

The migration scripts ship inside the wheel (``chancy/_alembic``); in a source checkout
they are the repository's ``alembic/`` folder. Both run the same ``env.py``, so
``alembic upgrade head`` at the repository root and :meth:`Chancy.migrate` produce the
same schema, recorded in the version table ``chancy_alembic_version``.
"""

from __future__ import annotations

import asyncio
import difflib
import io
import re
import weakref
from pathlib import Path
from typing import Any, Literal

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from chancy.errors import ConfigurationError
from chancy.models import TABLE_PREFIX, metadata

__all__ = [
    "VERSION_TABLE",
    "alembic_config",
    "check_revision",
    "configure_context",
    "current",
    "downgrade",
    "head",
    "include_name",
    "migration_lock_sql",
    "script_location",
    "sql",
    "upgrade",
]

VERSION_TABLE = f"{TABLE_PREFIX}alembic_version"
# pg_advisory_xact_lock key: the bytes of "chancy_m" read as a signed 64-bit integer.
_MIGRATION_LOCK_KEY = int.from_bytes(b"chancy_m", "big", signed=True)
_RELATIVE = re.compile(r"[+-]\d+$")
_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def script_location() -> Path:
    """Where the migration scripts are: in the installed package, else in the checkout."""
    packaged = Path(__file__).with_name("_alembic")
    if (packaged / "env.py").is_file():
        return packaged
    checkout = Path(__file__).resolve().parent.parent / "alembic"
    if (checkout / "env.py").is_file():
        return checkout
    raise FileNotFoundError(
        f"chancy's migration scripts are missing (looked in {packaged} and {checkout}); "
        "reinstall chancy"
    )


def alembic_config(
    connection: Connection | None = None, *, output: io.StringIO | None = None
) -> Config:
    """An Alembic :class:`Config` for chancy's scripts, optionally bound to a connection."""
    config = Config(output_buffer=output)
    config.set_main_option("script_location", str(script_location()))
    config.attributes["configure_logger"] = False
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Alembic ``include_name`` hook of chancy's own ``env.py``: only chancy's tables take
    part in its comparisons. (An application's ``env.py`` wants the opposite:
    :func:`chancy.alembic.exclude_chancy`.)
    """
    if type_ == "table":
        return name is not None and name.startswith(TABLE_PREFIX) and name != VERSION_TABLE
    return True


def configure_context() -> dict[str, Any]:
    """The options chancy's ``env.py`` passes to ``context.configure``."""
    return {
        "target_metadata": metadata,
        "version_table": VERSION_TABLE,
        "include_name": include_name,
        "compare_type": True,
        "compare_server_default": True,
    }


def migration_lock_sql() -> str:
    """SQL that makes concurrent migrators wait for each other (until commit)."""
    return f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_KEY})"


def head() -> str:
    """The newest revision this version of chancy knows."""
    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert revision is not None
    return revision


def check_revision(revision: str) -> None:
    """Raise :class:`~chancy.errors.ConfigurationError`, naming the closest revision, unless
    ``revision`` names one of chancy's (``head`` and ``base`` included). A relative
    revision (``-1``, ``head-1``, ``+2``) is left to Alembic, which counts from where the
    database is."""
    if _RELATIVE.search(revision):
        return
    script = ScriptDirectory.from_config(alembic_config())
    try:
        script.get_revisions(revision)
    except CommandError:
        known = [each.revision for each in reversed(list(script.walk_revisions()))]
        close = difflib.get_close_matches(revision, known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigurationError(
            f"{revision!r} is not a revision of chancy's schema; {hint}give one of "
            f"{', '.join(['base', *known, 'head'])}"
        ) from None


async def upgrade(target: AsyncEngine | AsyncConnection, revision: str = "head") -> None:
    """Upgrade chancy's schema to ``revision``, in one transaction."""
    await _run(target, "upgrade", revision)


async def downgrade(target: AsyncEngine | AsyncConnection, revision: str) -> None:
    """Downgrade chancy's schema to ``revision`` (``"base"`` removes all of it)."""
    await _run(target, "downgrade", revision)


async def current(target: AsyncEngine | AsyncConnection) -> str | None:
    """The revision the database is at, or None if chancy's schema was never installed."""
    if isinstance(target, AsyncEngine):
        async with target.connect() as connection:
            return await connection.run_sync(_current)
    return await target.run_sync(_current)


def sql(revision: str = "head", *, start: str | None = None) -> str:
    """The DDL that upgrades from ``start`` (default: an empty database) to ``revision``."""
    for each in (revision, start) if start else (revision,):
        check_revision(each)
    output = io.StringIO()
    span = f"{start}:{revision}" if start else revision
    command.upgrade(alembic_config(output=output), span, sql=True)
    return output.getvalue()


def _current(connection: Connection) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def _loop_lock() -> asyncio.Lock:
    """Alembic keeps its running context in module globals, so one event loop runs one
    migration at a time; other processes are kept apart by the advisory lock."""
    loop = asyncio.get_running_loop()
    lock = _locks.get(loop)
    if lock is None:
        lock = _locks[loop] = asyncio.Lock()
    return lock


async def _run(
    target: AsyncEngine | AsyncConnection,
    action: Literal["upgrade", "downgrade"],
    revision: str,
) -> None:
    check_revision(revision)

    def run(connection: Connection) -> None:
        getattr(command, action)(alembic_config(connection), revision)

    async with _loop_lock():
        if isinstance(target, AsyncEngine):
            async with target.begin() as connection:
                await connection.run_sync(run)
        else:
            await target.run_sync(run)
