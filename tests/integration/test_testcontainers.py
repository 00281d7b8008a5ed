"""The suite's basics on a throwaway PostgreSQL container, where a Docker engine answers.

On machines without one (the docker client alone is not enough) this module is skipped.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.engine import URL, make_url

from chancy.app import Chancy
from chancy.executor import Job
from chancy.repository import ClaimRepository
from tests.support import tasks
from tests.support.servers import docker_available

pytestmark = pytest.mark.skipif(not docker_available(), reason="no Docker engine answers")


@pytest.fixture(scope="module")
def container_url() -> Iterator[URL]:
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer("postgres:16-alpine", driver=None) as container:
        yield make_url(container.get_connection_url())


async def test_migrate_push_and_claim_on_a_container(container_url: URL) -> None:
    async with Chancy(container_url) as chancy:
        await chancy.migrate()
        ref = await chancy.push("default", Job.from_func(tasks.greet, kwargs={"name": "x"}))
        async with chancy.engine.begin() as connection:
            (claimed,) = await ClaimRepository().claim_available(connection, "default", 1, "w")
        assert claimed.id == ref.id
