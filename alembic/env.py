"""Alembic environment for chancy's schema (kept close to Alembic's async template).

The connection comes from, in order: ``config.attributes["connection"]`` (set by
:func:`chancy.migrations.upgrade` and by applications that run chancy's migrations on
their own connection), ``-x dsn=...``, ``CHANCY_DSN``, ``sqlalchemy.url``, and last the
embedded PostgreSQL. Only chancy's tables are compared for autogenerate and
``alembic check``, and the version table is ``chancy_alembic_version`` so an app's own
``alembic_version`` is never touched. Concurrent migrators are serialised by a
transaction-scoped advisory lock taken before the current revision is read.
"""

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from chancy.database.dsn import resolve_url
from chancy.migrations import VERSION_TABLE, configure_context, migration_lock_sql

config = context.config

if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def run_migrations_offline() -> None:
    """Emit the DDL as SQL (``alembic upgrade head --sql``) for a DBA to apply."""
    context.configure(
        url="postgresql://",
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **configure_context(),
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    context.configure(connection=connection, **configure_context())
    with context.begin_transaction():
        connection.exec_driver_sql(migration_lock_sql())
        context.run_migrations()
        if not context.get_context().get_current_heads():
            # Downgraded to base: leave nothing of chancy's behind, the version table too.
            connection.exec_driver_sql(f"DROP TABLE IF EXISTS {VERSION_TABLE}")


async def run_async_migrations() -> None:
    dsn = context.get_x_argument(as_dictionary=True).get("dsn")
    url = resolve_url(dsn or config.get_main_option("sqlalchemy.url") or None)
    connectable = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with connectable.connect() as connection:
            await connection.run_sync(do_run_migrations)
            await connection.commit()
    finally:
        await connectable.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        asyncio.run(run_async_migrations())
    else:
        do_run_migrations(connection)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
