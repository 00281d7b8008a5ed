"""DSNs that could never connect are refused when chancy is given them, with a
ConfigurationError that names the problem and the fix, and never a password."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from chancy.app import Chancy
from chancy.cli import app as cli
from chancy.database import describe, resolve_url, secrets_of
from chancy.errors import ConfigurationError

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "Sup3r@Secret"
UNENCODED = f"postgresql://app:{PASSWORD}@127.0.0.1:9/jobs"
"""A password with an '@' left as it is: parsers split the DSN at the wrong '@'."""
runner = CliRunner()


def shows_the_password(text: str) -> bool:
    return any(part in text for part in ("Sup3r", "Secret"))


@pytest.mark.parametrize(
    ("dsn", "words"),
    [
        ("postgresql://app:pw@db:99999/jobs", "port"),
        ("postgresql://app:pw@db:0/jobs", "port"),
        ("postgresql://app:pw@db:abc/jobs", "port"),
        ("postgresql://app:pw@db:/jobs", "port"),
        ("postgresql://app:pw@db/jobs?port=70000", "port"),
        ("postgresql://app:pw@db/jobs?host=a:1,b:x", "port"),
        ("postgresql://app:pw@[::1/jobs", "brackets"),
        ("postgresql://app:pw@[zz::1]:5432/jobs", "IPv6"),
    ],
    ids=[
        "port-too-big",
        "port-zero",
        "port-not-a-number",
        "port-empty",
        "query-port-too-big",
        "query-host-port",
        "unclosed-bracket",
        "bad-ipv6",
    ],
)
def test_a_dsn_with_a_bad_host_or_port_is_refused_when_given(dsn: str, words: str) -> None:
    with pytest.raises(ConfigurationError, match=words) as caught:
        Chancy(dsn)
    assert "pw" not in str(caught.value)


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("sslmode=required", "sslmode=require"),
        ("ssl=yes", "verify-full"),
        ("connect_timeout=soon", "connect_timeout"),
        ("connect_timeout=0", "connect_timeout"),
        ("keepalives=1", "'keepalives'"),
        ("options=-c%20search_path%3Dx", "server_settings"),
        ("sslmode=require&sslmode=disable", "more than once"),
        ("prepared_statement_cache_size=many", "prepared_statement_cache_size"),
    ],
    ids=[
        "bad-sslmode",
        "bad-ssl",
        "bad-connect-timeout",
        "zero-connect-timeout",
        "unknown-option",
        "libpq-options",
        "repeated-option",
        "bad-cache-size",
    ],
)
def test_a_dsn_option_asyncpg_cannot_take_is_refused_when_given(query: str, words: str) -> None:
    with pytest.raises(ConfigurationError, match=words) as caught:
        Chancy(f"postgresql://app:pw@db/jobs?{query}")
    assert "pw" not in str(caught.value)


def test_the_options_asyncpg_takes_from_a_dsn_are_accepted() -> None:
    query = (
        "sslmode=require&sslrootcert=/ca.pem&application_name=billing&connect_timeout=3"
        "&target_session_attrs=read-write&ssl=prefer"
    )
    url = resolve_url(f"postgresql://app:pw@db/jobs?{query}")
    assert url.query["sslmode"] == "require"


def test_a_password_with_an_unencoded_at_sign_is_refused_without_showing_it() -> None:
    with pytest.raises(ConfigurationError, match="%40") as caught:
        Chancy(UNENCODED)
    assert not shows_the_password(str(caught.value))


def test_describe_shows_no_userinfo_when_the_host_holds_an_at_sign() -> None:
    url = make_url(UNENCODED)  # parsed as password "Sup3r", host "Secret@127.0.0.1"
    assert describe(url) == "127.0.0.1:9/jobs"
    assert "Secret" in secrets_of(url)


@pytest.mark.parametrize(
    "command",
    [
        ["migrate"],
        ["push", "tests.support.tasks:greet", "--kwargs", '{"name": "x"}'],
        ["job", "show", "1"],
        ["job", "retry", "--state", "failed"],
        ["worker"],
        ["queue", "list"],
        ["demo", "--jobs", "1"],
    ],
)
async def test_commands_given_an_unencoded_at_sign_show_no_part_of_the_password(
    command: list[str],
) -> None:
    result = await asyncio.to_thread(runner.invoke, cli, [*command, "--dsn", UNENCODED])
    assert isinstance(result.exception, ConfigurationError)
    shown = "".join(traceback.format_exception(result.exception)) + result.output
    assert not shows_the_password(shown)


async def test_the_installed_command_says_how_to_write_the_at_sign() -> None:
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "chancy", "queue", "list", "--dsn", UNENCODED],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: ")
    assert "%40" in done.stderr
    assert not shows_the_password(done.stdout + done.stderr)
