"""Passwords are masked wherever chancy shows a driver's words (no database)."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from chancy.app import Chancy
from chancy.database import Timeouts, describe, mask_secrets, secrets_of
from chancy.errors import ConfigurationError

SECRET = "p@ss/w:rd"


def test_secrets_of_a_url_and_connect_args() -> None:
    url = make_url("postgresql://app:one@h/db?password=two")
    assert secrets_of(url, {"password": "three"}) == {"one", "two", "three"}


def test_mask_secrets_hides_plain_and_url_quoted_forms() -> None:
    text = f"failed for {SECRET} and postgresql://app:p%40ss%2Fw%3Ard@h/db"
    masked = mask_secrets(text, {SECRET})
    assert "p@ss" not in masked
    assert "p%40ss" not in masked
    assert masked.count("***") == 2


def test_describe_ignores_a_password_in_the_query_string() -> None:
    assert describe(make_url("postgresql://app@h:5/db?password=qs3cret")) == "app@h:5/db"


def test_repr_of_chancy_shows_no_connect_args_password() -> None:
    app = Chancy("postgresql://app@h/db", engine_options={"connect_args": {"password": SECRET}})
    assert SECRET not in repr(app)


def test_timeouts_become_server_settings_in_milliseconds() -> None:
    assert Timeouts().settings() == {"lock_timeout": "5000", "statement_timeout": "30000"}
    assert Timeouts(lock=0.0001, statement=None).settings() == {"lock_timeout": "1"}


@pytest.mark.parametrize("value", [0, -1, float("inf"), True, "5"])
def test_timeouts_must_be_positive_seconds(value: object) -> None:
    with pytest.raises(ConfigurationError, match="lock_timeout="):
        Timeouts(lock=value)  # type: ignore[arg-type]
