"""The shop's Alembic environment: its own history, and chancy's beside it.

Alembic's generic (synchronous) template with three additions, each marked ``# chancy``:
the ``include_name`` hook, so that autogenerate and ``alembic check`` leave chancy's
tables alone, and chancy's upgrade after the shop's own, on the same connection and in
the same transaction. chancy records its revisions in ``chancy_alembic_version``; the
shop's ``alembic_version`` only ever holds the shop's.
"""

from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool

from chancy import alembic as chancy_alembic  # chancy
from examples.alembic_app.app import database_url
from examples.alembic_app.models import metadata

config = context.config

if config.config_file_name is not None:
    fileConfig(config.config_file_name)

target_metadata = metadata


def run_migrations_offline() -> None:
    """Print the shop's DDL (``alembic upgrade head --sql``); ``chancy migrate --sql``
    prints chancy's."""
    context.configure(
        url=database_url(),
        target_metadata=target_metadata,
        include_name=chancy_alembic.exclude_chancy,  # chancy
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )

    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = create_engine(database_url(), poolclass=pool.NullPool)

    with connectable.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            include_name=chancy_alembic.exclude_chancy,  # chancy: its tables are not ours
        )

        with context.begin_transaction():
            context.run_migrations()
            if chancy_alembic.command_migrates():  # chancy: not on check, current, history
                chancy_alembic.upgrade(connection)  # chancy: its history, same transaction


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
