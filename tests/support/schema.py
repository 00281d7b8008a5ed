"""A database's schema as data, to compare what migrations and ``create_all`` make."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection
from sqlalchemy.pool import NullPool

from chancy.database import create_engine


def snapshot(connection: Connection) -> dict[str, Any]:
    """Everything that makes up a schema, as reflected from the database."""
    inspector = sa.inspect(connection)
    schema: dict[str, Any] = {}
    for table in sorted(inspector.get_table_names()):
        schema[table] = {
            "columns": [
                (
                    c["name"],
                    str(c["type"]),
                    c["nullable"],
                    c.get("default"),
                    bool(c.get("identity")),
                )
                for c in inspector.get_columns(table)
            ],
            "pk": inspector.get_pk_constraint(table),
            "indexes": sorted(
                (
                    i["name"],
                    tuple(i["column_names"]),
                    i["unique"],
                    i.get("dialect_options", {}).get("postgresql_where"),
                )
                for i in inspector.get_indexes(table)
            ),
            "checks": sorted(
                (c["name"], c["sqltext"]) for c in inspector.get_check_constraints(table)
            ),
            "uniques": inspector.get_unique_constraints(table),
            "fks": inspector.get_foreign_keys(table),
        }
    # The release of workflow steps: functions and triggers, as PostgreSQL prints them.
    functions = sorted(
        tuple(row)
        for row in connection.execute(
            sa.text(
                "SELECT p.proname, pg_get_functiondef(p.oid) FROM pg_proc AS p "
                "JOIN pg_namespace AS n ON n.oid = p.pronamespace "
                "WHERE n.nspname = current_schema() AND p.proname LIKE 'chancy%'"
            )
        )
    )
    triggers = sorted(
        tuple(row)
        for row in connection.execute(
            sa.text(
                "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger "
                "WHERE NOT tgisinternal AND tgrelid::regclass::text LIKE 'chancy%'"
            )
        )
    )
    if functions or triggers:
        schema["functions"], schema["triggers"] = functions, triggers
    return schema


async def reflect(url: URL) -> dict[str, Any]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(snapshot)
    finally:
        await engine.dispose()
