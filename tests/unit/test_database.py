"""DSN resolution and descriptions that never show a password."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from chancy.app import Chancy
from chancy.database import describe, resolve_url
from chancy.errors import ChancyError, ConfigurationError, DatabaseUnavailableError

SECRET = "s3cr3t-p4ss"


def test_plain_postgresql_dsn_runs_on_asyncpg() -> None:
    assert resolve_url("postgresql://u@h/db").drivername == "postgresql+asyncpg"
    assert resolve_url("postgres://u@h/db").drivername == "postgresql+asyncpg"


def test_environment_variable_is_used_when_no_dsn_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHANCY_DSN", "postgresql://env@envhost/envdb")
    assert resolve_url(None).host == "envhost"


def test_other_databases_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="PostgreSQL, not 'mysql'"):
        resolve_url("mysql://u@h/db")


def test_garbage_dsn_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigurationError) as caught:
        resolve_url(f"not a url {SECRET}")
    assert SECRET not in str(caught.value)


def test_describe_never_shows_the_password() -> None:
    text = describe(make_url(f"postgresql://app:{SECRET}@db.internal:6543/jobs"))
    assert text == "app@db.internal:6543/jobs"


def test_describe_a_unix_socket_server() -> None:
    assert describe(make_url("postgresql://postgres:@/postgres?host=/tmp/x")) == (
        "postgres@/tmp/x:5432/postgres"
    )


def test_repr_of_chancy_hides_the_password() -> None:
    assert SECRET not in repr(Chancy(f"postgresql://app:{SECRET}@h/db"))


def test_dsn_and_engine_together_are_refused() -> None:
    with pytest.raises(ChancyError, match="either dsn= or engine="):
        Chancy("postgresql://h/db", engine=object())  # type: ignore[arg-type]


async def test_unreachable_server_names_host_and_port_but_not_the_password() -> None:
    chancy = Chancy(f"postgresql://app:{SECRET}@127.0.0.1:9/jobs")
    with pytest.raises(DatabaseUnavailableError) as caught:
        await chancy.open()
    message = str(caught.value)
    assert "app@127.0.0.1:9/jobs" in message
    assert "CHANCY_DSN" in message
    assert SECRET not in message
    assert SECRET not in repr(caught.value.__cause__)
    await chancy.close()
