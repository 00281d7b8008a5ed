"""`chancy grants`: the SQL for a role that reads and writes rows, and nothing more."""

from __future__ import annotations

import pytest

from chancy.errors import ConfigurationError
from chancy.grants import grants_sql
from chancy.migrations import VERSION_TABLE
from chancy.models import metadata


def statements(sql: str) -> list[str]:
    return [line for line in sql.splitlines() if line and not line.startswith("--")]


def test_every_table_of_the_models_gets_row_privileges() -> None:
    granted = statements(grants_sql("app_worker"))
    for table in metadata.sorted_tables:
        line = f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE public.{table.name} TO app_worker;"
        assert line in granted


def test_the_version_table_is_read_only() -> None:
    granted = [line for line in statements(grants_sql("w")) if VERSION_TABLE in line]
    assert granted == [f"GRANT SELECT ON TABLE public.{VERSION_TABLE} TO w;"]


def test_sequences_of_identity_columns_are_usable() -> None:
    assert "GRANT USAGE, SELECT ON SEQUENCE public.chancy_jobs_id_seq TO w;" in grants_sql("w")


def test_nothing_granted_changes_the_schema() -> None:
    for line in statements(grants_sql("w")):
        assert line.startswith("GRANT ")
        assert not any(word in line for word in ("ALL", "CREATE", "TRUNCATE", "REFERENCES"))


def test_listen_and_notify_are_said_to_need_no_grant() -> None:
    assert "LISTEN and NOTIFY" in grants_sql("w")


def test_names_that_need_quoting_are_quoted() -> None:
    sql = grants_sql("App Worker", schema="My Schema")
    assert 'GRANT USAGE ON SCHEMA "My Schema" TO "App Worker";' in sql
    assert 'ON TABLE "My Schema".chancy_jobs TO "App Worker";' in sql


@pytest.mark.parametrize("role", ["", "  ", "public", "PUBLIC"])
def test_no_grants_to_an_empty_role_or_to_everyone(role: str) -> None:
    with pytest.raises(ConfigurationError):
        grants_sql(role)
