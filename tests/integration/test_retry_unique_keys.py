"""Retrying failed or cancelled jobs whose unique key an unfinished job holds: at most one
unfinished job per key, so such a job stays as it is, and chancy says which job holds it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL
from typer.testing import CliRunner

from chancy.app import Chancy
from chancy.cli import app as cli
from chancy.errors import UniqueKeyHeldError
from chancy.executor import Job
from chancy.repository.maintenance import MaintenanceRepository
from chancy.states import JobState
from tests.support import tasks
from tests.support.rows import insert_job_row
from tests.support.servers import asyncpg_dsn
from tests.support.waiting import until_async

runner = CliRunner()


async def failed_row(chancy: Chancy, unique_key: str | None, queue: str = "default") -> int:
    """A job that failed its only attempt, holding ``unique_key`` no longer."""
    return await insert_job_row(
        chancy.engine,
        func="tests.support.tasks.greet",
        kwargs={"name": "x"},
        queue=queue,
        state=JobState.FAILED.value,
        attempts=1,
        max_attempts=1,
        unique_key=unique_key,
    )


async def holder(chancy: Chancy, unique_key: str) -> int:
    """A newer job with ``unique_key``, pending (no worker runs here)."""
    job = Job.from_func(tasks.greet, kwargs={"name": "y"}).with_unique_key(unique_key)
    return (await chancy.push("default", job)).id


async def state_of(chancy: Chancy, job_id: int) -> JobState:
    job = await chancy.get_job(job_id)
    assert job is not None
    return job.state


async def test_retrying_a_job_whose_key_a_newer_unfinished_job_holds_names_the_holder(
    chancy: Chancy,
) -> None:
    failed = await failed_row(chancy, "report-7")
    newer = await holder(chancy, "report-7")
    with pytest.raises(UniqueKeyHeldError) as caught:
        await chancy.retry_job(failed)
    assert (caught.value.job_id, caught.value.holder_id) == (failed, newer)
    assert f"job {newer}" in str(caught.value)
    assert "'report-7'" in str(caught.value)
    assert await state_of(chancy, failed) is JobState.FAILED


async def test_retrying_a_job_whose_key_only_finished_jobs_share_brings_it_back(
    chancy: Chancy,
) -> None:
    older = await failed_row(chancy, "report-8")
    failed = await failed_row(chancy, "report-8")
    retried = await chancy.retry_job(failed)
    assert retried is not None
    assert retried.state is JobState.PENDING
    assert await state_of(chancy, older) is JobState.FAILED


async def test_retry_jobs_retries_the_others_and_reports_the_jobs_whose_key_is_held(
    chancy: Chancy,
) -> None:
    held = await failed_row(chancy, "report-9")
    newer = await holder(chancy, "report-9")
    free = [await failed_row(chancy, None), await failed_row(chancy, "report-10")]
    retried = await chancy.retry_jobs(state="failed")
    assert retried == 2
    assert retried.skipped == {held: newer}
    assert [await state_of(chancy, job_id) for job_id in free] == [JobState.PENDING] * 2
    assert await state_of(chancy, held) is JobState.FAILED


async def test_retry_jobs_brings_back_one_of_several_failed_jobs_sharing_a_free_key(
    chancy: Chancy,
) -> None:
    """Two failed jobs with one key and no holder: retrying both would make two unfinished
    jobs with one key; the newest comes back and holds the key the other is skipped for."""
    older = await failed_row(chancy, "report-11")
    newest = await failed_row(chancy, "report-11")
    retried = await chancy.retry_jobs(state="failed")
    assert retried == 1
    assert retried.skipped == {older: newest}
    assert await state_of(chancy, newest) is JobState.PENDING


async def test_retry_jobs_reports_a_held_key_across_batches(chancy: Chancy) -> None:
    """Batches of one: a skipped job never stops the next batch."""
    held = await failed_row(chancy, "report-12")
    newer = await holder(chancy, "report-12")
    later = await failed_row(chancy, None)
    maintenance = MaintenanceRepository()
    async with chancy.engine.begin() as connection:
        first = await maintenance.retry_many(connection, JobState.FAILED, None, limit=1)
        assert (first.retried, first.skipped, first.last_id) == (0, {held: newer}, held)
        assert first.last_id is not None
        second = await maintenance.retry_many(
            connection, JobState.FAILED, None, limit=1, after=first.last_id
        )
        assert (second.retried, second.skipped, second.last_id) == (1, {}, later)


async def pushed_during(
    chancy: Chancy, database_url: URL, unique_key: str, retry: Awaitable[object]
) -> tuple[int, BaseException | object]:
    """Run ``retry`` while a push of a job with ``unique_key`` is not yet committed, and
    commit it once the retry waits for it (the retry looked before the job existed)."""
    pusher = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        transaction = pusher.transaction()
        await transaction.start()
        pushed = await pusher.fetchval(
            "INSERT INTO chancy_jobs (queue, func, kwargs, unique_key) "
            "VALUES ('default', 'tests.support.tasks.greet', '{}', $1) RETURNING id",
            unique_key,
        )
        task = asyncio.ensure_future(retry)

        async def retry_waits_for_the_push() -> bool:
            async with chancy.engine.connect() as waiting:
                count = await waiting.scalar(
                    sa.text(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'transactionid' "
                        "AND NOT granted"
                    )
                )
            return bool(count)

        await until_async(retry_waits_for_the_push, what="the retry waiting for the push")
        await transaction.commit()
        outcome = await asyncio.gather(task, return_exceptions=True)
        return int(pushed), outcome[0]
    finally:
        await pusher.close()


async def test_a_job_pushed_with_the_key_during_a_retry_is_named_as_the_holder(
    chancy: Chancy, database_url: URL
) -> None:
    failed = await failed_row(chancy, "report-14")
    pushed, outcome = await pushed_during(
        chancy, database_url, "report-14", chancy.retry_job(failed)
    )
    assert isinstance(outcome, UniqueKeyHeldError)
    assert (outcome.job_id, outcome.holder_id) == (failed, pushed)
    assert await state_of(chancy, failed) is JobState.FAILED


async def test_a_job_pushed_with_the_key_during_a_bulk_retry_is_reported(
    chancy: Chancy, database_url: URL
) -> None:
    failed = await failed_row(chancy, "report-15")
    other = await failed_row(chancy, None)
    pushed, outcome = await pushed_during(
        chancy, database_url, "report-15", chancy.retry_jobs(state="failed")
    )
    assert outcome == 1
    assert getattr(outcome, "skipped", None) == {failed: pushed}
    assert await state_of(chancy, other) is JobState.PENDING


async def test_the_cli_says_which_job_holds_the_key(database_url: URL, chancy: Chancy) -> None:
    failed = await failed_row(chancy, "report-13")
    newer = await holder(chancy, "report-13")
    dsn = database_url.render_as_string(hide_password=False)
    one = await asyncio.to_thread(runner.invoke, cli, ["job", "retry", str(failed), "--dsn", dsn])
    assert one.exit_code != 0
    assert isinstance(one.exception, UniqueKeyHeldError)
    bulk = await asyncio.to_thread(
        runner.invoke, cli, ["job", "retry", "--state", "failed", "--dsn", dsn]
    )
    assert bulk.exit_code == 0, bulk.output
    assert "0 failed jobs are pending again" in bulk.output
    assert f"job {failed} (held by job {newer})" in bulk.output
