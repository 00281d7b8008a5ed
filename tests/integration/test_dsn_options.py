"""libpq's options in a DSN's query (``sslmode``, ``application_name``, ``connect_timeout``)
reach asyncpg, which takes them only from a DSN string, not as keywords."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL

from chancy.app import Chancy
from chancy.database import create_engine, resolve_url


def with_options(url: URL, **options: str) -> URL:
    return url.update_query_dict(options)


async def test_sslmode_and_application_name_reach_the_connection(database_url: URL) -> None:
    url = with_options(database_url, sslmode="disable", application_name="chancy-dsn-test")
    async with Chancy(url) as chancy, chancy.engine.connect() as connection:
        name = await connection.scalar(sa.text("SHOW application_name"))
        ssl = await connection.scalar(
            sa.text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        )
    assert (name, ssl) == ("chancy-dsn-test", False)


async def test_connect_timeout_becomes_asyncpg_s_timeout(database_url: URL) -> None:
    engine = create_engine(resolve_url(with_options(database_url, connect_timeout="3")))
    seen: list[dict[str, Any]] = []
    event.listen(engine.sync_engine, "do_connect", lambda *args: seen.append(dict(args[3])))
    try:
        async with engine.connect() as connection:
            assert await connection.scalar(sa.text("SELECT 1")) == 1
    finally:
        await engine.dispose()
    (arguments,) = seen
    assert arguments["timeout"] == 3.0
    assert "connect_timeout" not in arguments
