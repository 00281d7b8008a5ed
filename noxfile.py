"""Sessions that people and CI both use: `nox -s lint tests testing_app` (the default)
is what CI (`bash .ci/run`) runs; and, on demand, `nox -s example`, `nox -s benchmarks`,
`nox -s chaos`."""

from __future__ import annotations

import os
import socket

import nox

nox.options.sessions = ["lint", "tests", "testing_app"]
nox.options.default_venv_backend = "venv"

MACHINE_POSTGRES = ("127.0.0.1", 5432)
MACHINE_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def listening(address: tuple[str, int]) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(address) == 0


@nox.session
def tests(session: nox.Session) -> None:
    """The suite on the embedded PostgreSQL, then on CHANCY_TEST_DSN or the local server.
    A run that fails or collects no test (pytest's exit status 5) fails the session."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs, env={"CHANCY_TEST_DSN": ""})
    dsn = os.environ.get("CHANCY_TEST_DSN") or (MACHINE_DSN if listening(MACHINE_POSTGRES) else "")
    if dsn:
        session.run("python", "-m", "pytest", *session.posargs, env={"CHANCY_TEST_DSN": dsn})
    else:
        session.log("no PostgreSQL at 127.0.0.1:5432 and no CHANCY_TEST_DSN: second run skipped")


@nox.session
def testing_app(session: nox.Session) -> None:
    """examples/testing_app's own suite (chancy.testing and its pytest plugin, as an app
    uses them): 20 rounds in two processes side by side (pytest-xdist), on the embedded
    PostgreSQL, so that databases per process never collide."""
    session.install("-e", ".[test]")
    session.chdir("examples/testing_app")
    session.run(
        "python",
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-n",
        "2",
        "--count",
        "20",
        env={"CHANCY_TEST_DSN": ""},
    )


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (lint and format) over everything, mypy over what pyproject's [tool.mypy]
    names (chancy/, tests/, benchmarks/, this file; strict)."""
    session.install("-e", ".[dev]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


@nox.session
def example(session: nox.Session) -> None:
    """The quick start's example, on the embedded PostgreSQL unless CHANCY_DSN is set."""
    session.install("-e", ".")
    session.run("python", "examples/hello.py")


@nox.session
def benchmarks(session: nox.Session) -> None:
    """The benchmarks (`python -m benchmarks`), on a private embedded PostgreSQL; arguments
    after `--` are passed on: `nox -s benchmarks -- --scale 0.1`, `-- --dsn DSN --only S1`."""
    session.install("-e", ".[bench]")
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session
def chaos(session: nox.Session) -> None:
    """The chaos suite at full size (`python -m benchmarks.chaos`), each scenario on a
    private PostgreSQL it kills and restarts: `nox -s chaos -- --minutes 2`."""
    session.install("-e", ".[test,bench]")
    session.run("python", "-m", "benchmarks.chaos", *session.posargs)
