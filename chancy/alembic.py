"""chancy inside an application's own Alembic environment.

An application that has its own models and Alembic history keeps chancy's schema beside
its own, in the same database, with these lines in its ``env.py``::

    from chancy import alembic as chancy_alembic

    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_name=chancy_alembic.exclude_chancy,  # autogenerate leaves chancy's tables be
    )
    with context.begin_transaction():
        context.run_migrations()
        if chancy_alembic.command_migrates():  # upgrade, downgrade, stamp; not check, current
            chancy_alembic.upgrade(connection)  # chancy's history, in the same transaction

``alembic upgrade head`` then brings both schemas up to date in one transaction. chancy's
revisions are recorded in its own version table, ``chancy_alembic_version``: the
application's ``alembic_version`` only ever holds the application's revisions, and its
``alembic revision --autogenerate`` and ``alembic check`` see no change in chancy's
tables. See ``docs/embedding.md`` for the whole recipe.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from alembic import command
from alembic import context as alembic_context
from alembic import op as alembic_op
from sqlalchemy.engine import Connection

from chancy.migrations import alembic_config
from chancy.models import TABLE_PREFIX

__all__ = ["command_migrates", "exclude_chancy", "upgrade"]


def exclude_chancy(name: str | None, type_: str, parent_names: Any) -> bool:
    """Alembic ``include_name`` hook for an application's ``env.py``: every table but
    chancy's (``chancy_*``, its version table ``chancy_alembic_version`` included).

    With it, the application's ``alembic revision --autogenerate`` neither drops nor
    re-creates chancy's tables, and its ``alembic check`` reports no change in them.
    Indexes and constraints of an excluded table are not compared either. An application
    with a hook of its own combines the two::

        include_name=lambda *args: exclude_chancy(*args) and my_include_name(*args)
    """
    return not (type_ == "table" and name is not None and name.startswith(TABLE_PREFIX))


def command_migrates() -> bool:
    """Whether the Alembic command now running ``env.py`` moves the schema to a revision
    (``upgrade``, ``downgrade``, ``stamp``), as opposed to one that only reads it
    (``current``, ``check``, ``history``, ``revision --autogenerate``).

    Guarding :func:`upgrade` with it keeps the read-only commands read-only. Call it after
    ``context.configure(...)``.
    """
    # Alembic hands the commands that move the schema a destination revision, and only
    # those; it reaches the MigrationContext's options unchanged.
    return "destination_rev" in alembic_context.get_context().opts


def upgrade(connection: Connection, revision: str = "head") -> None:
    """Upgrade chancy's schema to ``revision`` on ``connection``, in its transaction.

    ``connection`` is a synchronous SQLAlchemy connection on any PostgreSQL driver
    (psycopg, psycopg2, or asyncpg seen through ``AsyncConnection.run_sync``); if it is in
    a transaction, chancy's migrations join it and commit nothing, so they commit or roll
    back with the application's. chancy's revisions are recorded in
    ``chancy_alembic_version``; the application's ``alembic_version`` is not touched.
    Concurrent migrators take turns (an advisory lock held until commit).

    It may be called from inside a running Alembic environment (the application's
    ``env.py``, or one of its revisions): the application's ``context`` and ``op`` stay as
    they were.
    """
    with _running_alembic_kept():
        command.upgrade(alembic_config(connection), revision)


@contextlib.contextmanager
def _running_alembic_kept() -> Iterator[None]:
    """Put back whatever Alembic environment and operations were running before.

    Alembic publishes the running ``EnvironmentContext`` and ``Operations`` as globals of
    the modules ``alembic.context`` and ``alembic.op``, and on leaving deletes them instead
    of restoring what was there before: a nested run would leave the application's
    ``env.py`` without its ``context``, and make Alembic fail as the outer run ends.
    """
    saved = [(vars(module), dict(vars(module))) for module in (alembic_context, alembic_op)]
    try:
        yield
    finally:
        for namespace, before in saved:
            for name in namespace.keys() - before.keys():
                del namespace[name]
            namespace.update(before)
