"""The privileges of a role that pushes and runs jobs but cannot change chancy's schema.

chancy's tables can belong to a migration role (the one that runs ``chancy migrate``)
while the application and its workers connect as a role that may only read and write
rows. ``chancy grants --role NAME`` prints what that role needs, for the owner of the
tables to apply::

    chancy grants --role app_worker | psql "$OWNER_DSN"

The tables come from :data:`chancy.models.metadata`, so a version of chancy that adds a
table grants it too: run it again after each migration.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from chancy.errors import ConfigurationError
from chancy.migrations import VERSION_TABLE
from chancy.models import metadata

__all__ = ["GRANTS_SCHEMA_DEFAULT", "ROW_PRIVILEGES", "grants_sql"]

GRANTS_SCHEMA_DEFAULT = "public"
ROW_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"
_PREPARER = postgresql.dialect().identifier_preparer  # type: ignore[no-untyped-call]


def grants_sql(role: str, *, schema: str = GRANTS_SCHEMA_DEFAULT) -> str:
    """The SQL (with comments) that lets ``role`` push and run jobs on chancy's tables in
    ``schema``: ``USAGE`` on the schema, ``SELECT, INSERT, UPDATE, DELETE`` on each table,
    ``SELECT`` on the version table (a worker checks the schema version when it starts),
    and ``USAGE, SELECT`` on the tables' sequences. Nothing that changes the schema."""
    who = _identifier(role, "role")
    where = _identifier(schema, "schema")
    lines = [
        f"-- chancy: the privileges of {who}, which pushes and runs jobs but cannot change",
        "-- chancy's schema. Apply as the owner of chancy's tables (the role that runs",
        "-- `chancy migrate`), in the application's database, and again after each",
        "-- migration: a new version of chancy may add tables.",
        "-- LISTEN and NOTIFY (worker wake-ups, wait_for_job) need no privilege in",
        "-- PostgreSQL. Every role may CONNECT to a database unless that was revoked; if so:",
        f"--   GRANT CONNECT ON DATABASE <database> TO {who};",
        f"-- PostgreSQL 14 and older let every role create tables in schema {where}; to stop",
        f"-- that: REVOKE CREATE ON SCHEMA {where} FROM PUBLIC;",
        f"GRANT USAGE ON SCHEMA {where} TO {who};",
    ]
    for table in metadata.sorted_tables:
        lines.append(f"GRANT {ROW_PRIVILEGES} ON TABLE {where}.{_quote(table.name)} TO {who};")
    lines.append(f"GRANT SELECT ON TABLE {where}.{_quote(VERSION_TABLE)} TO {who};")
    for sequence in _sequences():
        lines.append(f"GRANT USAGE, SELECT ON SEQUENCE {where}.{_quote(sequence)} TO {who};")
    return "\n".join(lines) + "\n"


def _sequences() -> list[str]:
    """The sequences behind identity and serial columns, named as PostgreSQL names them
    (``<table>_<column>_seq``, at most 63 characters)."""
    names = []
    for table in metadata.sorted_tables:
        column: sa.Column[int] | None = table.autoincrement_column
        if column is not None:
            names.append(_sequence_name(table.name, column.name))
    return names


def _sequence_name(table: str, column: str) -> str:
    # PostgreSQL's ChooseRelationName: shorten the longer of the two parts until it fits.
    limit = 63 - len("__seq")
    while len(table) + len(column) > limit:
        if len(table) >= len(column):
            table = table[:-1]
        else:
            column = column[:-1]
    return f"{table}_{column}_seq"


def _identifier(name: str, what: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ConfigurationError(f"the {what} name is empty; give one, as --{what} app_worker")
    if what == "role" and name.lower() == "public":
        raise ConfigurationError(
            "PUBLIC is every role: grant to the one role your application and workers use"
        )
    return _quote(name)


def _quote(name: str) -> str:
    quoted: str = _PREPARER.quote(name)
    return quoted
