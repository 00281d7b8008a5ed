"""Workflows attacked: hostile values, huge shapes, races with real workers, retention,
retries, unique keys, delays, a role without table ownership, and a downgrade with
blocked steps."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from chancy import migrations
from chancy.app import Chancy
from chancy.errors import (
    InvalidKwargsError,
    InvalidWorkflowError,
    UniqueKeyHeldError,
    UnknownWorkflowError,
)
from chancy.executor import Job, QueuedJob
from chancy.queue import Queue
from chancy.repository import MaintenanceRepository
from chancy.states import JobState
from chancy.worker import Worker
from chancy.workflow import MAX_STEPS, Workflow, WorkflowStatus
from tests.integration.test_roles import dml_url, role  # noqa: F401 (fixtures)
from tests.support import workflow_tasks
from tests.support.servers import asyncpg_dsn
from tests.support.waiting import until_async


def number(n: int) -> Job:
    return Job.from_func(workflow_tasks.number, kwargs={"n": n})


def fail_once_then_parents(*, job: QueuedJob) -> dict[str, Any]:
    """Fails its first attempt; then returns its parents' results."""
    if job.attempts < 2:
        raise RuntimeError("first attempt fails")
    return dict(job.parent_results)


async def states_of(chancy: Chancy, workflow_id: int) -> dict[str, JobState]:
    state = await chancy.get_workflow(workflow_id)
    return {name: job.state for name, job in state.steps.items()}


async def scalar(chancy: Chancy, sql: str, **params: Any) -> Any:
    async with chancy.engine.connect() as connection:
        return (await connection.execute(sa.text(sql), params)).scalar_one()


# -- hostile values ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["a\x00b", "a\ud800b", "x" * 10_000_000, "\n", "tab\there", "\u200b" * 201]
)
def test_hostile_workflow_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidWorkflowError):
        Workflow(name)


@pytest.mark.parametrize(
    "name", ["a\x00b", "a\ud800b", "x" * 10_000_000, "", "ü", "a b", "../etc", "x" * 65]
)
def test_hostile_step_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidWorkflowError):
        Workflow("w").step(name, number(1))


def test_a_parent_name_with_nul_is_refused_and_the_step_count_is_capped() -> None:
    with pytest.raises(InvalidWorkflowError):
        Workflow("w").step("a", number(1)).step("b", number(2), after=["a\x00"])
    workflow = Workflow("w")
    job = number(1)
    for index in range(MAX_STEPS):
        workflow = workflow.step(f"s{index}", job)
    with pytest.raises(InvalidWorkflowError, match="more than 2,000 steps"):
        workflow.step("one-more", job)


def test_a_step_whose_kwargs_hold_nul_is_refused_before_any_statement() -> None:
    with pytest.raises(InvalidKwargsError, match="NUL"):
        Job.from_func(workflow_tasks.fail, kwargs={"message": "x\x00y"})


async def test_over_64_mib_of_kwargs_is_refused_before_any_statement(database_url: URL) -> None:
    chancy = Chancy(database_url, queues=[Queue(name="default")], max_kwargs_bytes=None)
    big = "é" * (1024 * 1024)  # sent escaped: 6 bytes each
    job = Job.from_func(workflow_tasks.number, kwargs={"n": big})
    workflow = Workflow("huge")
    for index in range(12):
        workflow = workflow.step(f"s{index}", job)  # the same Job object in many steps
    async with chancy:
        with pytest.raises(InvalidWorkflowError, match="over the"):
            await chancy.push_workflow(workflow)
        assert await scalar(chancy, "SELECT count(*) FROM chancy_jobs") == 0


async def test_a_queued_job_as_a_step_is_a_new_job(chancy: Chancy) -> None:
    ref = await chancy.push(number(7))
    queued = await chancy.get_job(ref)
    assert queued is not None
    wf = Workflow("again").step("a", queued).step("b", queued, after=["a"])
    pushed = await chancy.push_workflow(wf)
    assert int(ref) not in set(pushed.steps.values())
    async with Worker(chancy):
        done = await chancy.wait_for_workflow(pushed, timeout=30)
    assert done.state is WorkflowStatus.SUCCEEDED
    assert [done.steps[name].result for name in "ab"] == [7, 7]
    assert {done.steps[name].attempts for name in "ab"} == {1}


# -- huge shapes ------------------------------------------------------------------------


async def test_a_chain_2000_deep_is_cancelled_by_one_statement(chancy: Chancy) -> None:
    workflow = Workflow("deep").step("s0", number(0))
    job = number(1)
    for index in range(1, MAX_STEPS):
        workflow = workflow.step(f"s{index}", job, after=[f"s{index - 1}"])
    ref = await chancy.push_workflow(workflow)
    assert await chancy.cancel_job(ref.steps["s0"])
    states = await states_of(chancy, ref.id)
    assert set(states.values()) == {JobState.CANCELLED}
    last = (await chancy.get_workflow(ref)).steps[f"s{MAX_STEPS - 1}"]
    assert last.errors[-1]["message"] == f"upstream step 's{MAX_STEPS - 2}' cancelled" or (
        last.errors[-1]["message"] == "upstream step 's0' cancelled"
    )


async def test_a_fan_in_of_1999_parents_is_released_once_by_one_statement(
    chancy: Chancy,
) -> None:
    workflow = Workflow("wide")
    job = number(1)
    parents = [f"p{index}" for index in range(MAX_STEPS - 1)]
    for name in parents:
        workflow = workflow.step(name, job)
    workflow = workflow.step("join", job, after=parents)
    ref = await chancy.push_workflow(workflow)
    join = ref.steps["join"]
    async with chancy.engine.begin() as connection:
        await connection.execute(
            sa.text(
                "UPDATE chancy_jobs SET state = 'succeeded', completed_at = now() "
                "WHERE workflow_id = :w AND id <> :join AND id <> :last"
            ),
            {"w": ref.id, "join": join, "last": ref.steps["p1998"]},
        )
    assert await scalar(chancy, "SELECT waiting_on FROM chancy_jobs WHERE id = :id", id=join) == 1
    await chancy.cancel_job(ref.steps["p1998"])
    row = (await chancy.get_workflow(ref)).steps["join"]
    assert row.state is JobState.CANCELLED
    assert row.errors[-1]["message"] == "upstream step 'p1998' cancelled"


# -- races with real workers ------------------------------------------------------------


async def test_many_fan_ins_finished_by_concurrent_workers_are_each_released_once(
    database_url: URL,
) -> None:
    queues = [Queue(name="default", concurrency=8, polling_interval=0.05)]
    async with Chancy(database_url, queues=queues) as chancy:
        refs = []
        for index in range(40):
            workflow = (
                Workflow(f"fan-{index}")
                .step("a", number(1))
                .step("b", number(2))
                .step("c", number(3))
                .step("join", Job.from_func(workflow_tasks.add_parents), after=["a", "b", "c"])
                .step("tail", Job.from_func(workflow_tasks.add_parents), after=["join"])
            )
            refs.append(await chancy.push_workflow(workflow))
        async with Worker(chancy), Worker(chancy):
            done = [await chancy.wait_for_workflow(ref, timeout=120) for ref in refs]
    for state in done:
        assert state.state is WorkflowStatus.SUCCEEDED
        assert state.steps["join"].result == 6
        assert state.steps["tail"].result == 6
        assert state.steps["join"].attempts == 1


async def test_two_retry_workflow_calls_at_once_retry_each_step_once(chancy: Chancy) -> None:
    workflow = (
        Workflow("twice")
        .step("a", number(1))
        .step("b", Job.from_func(workflow_tasks.fail_until, kwargs={"attempt": 2}), after=["a"])
        .step("c", Job.from_func(workflow_tasks.add_parents), after=["b"])
    )
    ref = await chancy.push_workflow(workflow)
    async with Worker(chancy):
        assert (await chancy.wait_for_workflow(ref, timeout=30)).state is WorkflowStatus.FAILED
    counts = await asyncio.gather(chancy.retry_workflow(ref), chancy.retry_workflow(ref))
    assert sorted(counts) == [0, 2]
    state = await chancy.get_workflow(ref)
    assert state.steps["b"].max_attempts == 2
    async with Worker(chancy):
        done = await chancy.wait_for_workflow(ref, timeout=30)
    assert done.state is WorkflowStatus.SUCCEEDED
    assert done.steps["c"].result == 2


async def test_retry_of_a_running_or_succeeded_workflow_changes_nothing(chancy: Chancy) -> None:
    ref = await chancy.push_workflow(
        Workflow("ok").step("a", number(1)).step("b", number(2), after=["a"])
    )
    assert await chancy.retry_workflow(ref) == 0
    assert await states_of(chancy, ref.id) == {"a": JobState.PENDING, "b": JobState.BLOCKED}
    async with Worker(chancy):
        done = await chancy.wait_for_workflow(ref, timeout=30)
    assert await chancy.retry_workflow(ref) == 0
    again = await chancy.get_workflow(ref)
    assert again.state is WorkflowStatus.SUCCEEDED
    assert [again.steps[n].attempts for n in "ab"] == [done.steps[n].attempts for n in "ab"]
    assert await chancy.cancel_workflow(ref) == 0


async def test_cancel_workflow_racing_an_outcome_does_not_deadlock(chancy: Chancy) -> None:
    ref = await chancy.push_workflow(
        Workflow("lock-order").step("a", number(1)).step("b", number(2), after=["a"])
    )
    a = ref.steps["a"]
    connection = await asyncpg.connect(asyncpg_dsn(chancy.engine.url))
    try:
        # A claim: a's new row version now comes after b's in the workflow_id index.
        await connection.execute("UPDATE chancy_jobs SET state = 'running' WHERE id = $1", a)
        await connection.execute("BEGIN")
        await connection.execute("SELECT 1 FROM chancy_jobs WHERE id = $1 FOR UPDATE", a)
        cancelling = asyncio.ensure_future(chancy.cancel_workflow(ref))
        await until_async(lambda: _waiting_on_a_lock(chancy), what="cancel waits on a")
        finishing = asyncio.ensure_future(
            connection.execute(
                "UPDATE chancy_jobs SET state = 'succeeded', completed_at = now() WHERE id = $1",
                a,
            )
        )
        try:
            await asyncio.wait_for(asyncio.shield(finishing), timeout=5)
            await connection.execute("COMMIT")
        except asyncpg.DeadlockDetectedError:
            await connection.execute("ROLLBACK")
        cancelled = await cancelling
    finally:
        if not connection.is_closed():
            await connection.close()
    assert cancelled >= 1
    state = await chancy.get_workflow(ref)
    assert state.finished


async def _waiting_on_a_lock(chancy: Chancy) -> bool:
    return bool(
        await scalar(
            chancy,
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database()",
        )
    )


async def test_cancel_workflow_while_workers_finish_steps_leaves_nothing_blocked(
    database_url: URL,
) -> None:
    queues = [Queue(name="default", concurrency=8, polling_interval=0.05)]
    async with Chancy(database_url, queues=queues) as chancy:
        refs = []
        for index in range(30):
            workflow = Workflow(f"w{index}").step("s0", number(0))
            for step in range(1, 8):
                workflow = workflow.step(f"s{step}", number(step), after=[f"s{step - 1}"])
            workflow = workflow.step("always", number(9), after=["s7"], always=True)
            refs.append(await chancy.push_workflow(workflow))
        async with Worker(chancy):
            for ref in refs:
                # cancel_workflow may deadlock with an outcome (see the test above)
                for _ in range(5):
                    try:
                        await chancy.cancel_workflow(ref)
                        break
                    except sa.exc.DBAPIError as exc:
                        if "deadlock" not in str(exc):
                            raise
            done = [await chancy.wait_for_workflow(ref, timeout=60) for ref in refs]
    assert all(state.finished for state in done)
    for state in done:
        assert JobState.BLOCKED not in {job.state for job in state.steps.values()}


# -- retention, retries, unique keys, delays -------------------------------------------


async def test_retry_after_the_succeeded_parents_were_pruned_is_refused(
    chancy: Chancy,
) -> None:
    workflow = (
        Workflow("half-pruned")
        .step("a", number(1))
        .step("b", Job.from_func(fail_once_then_parents), after=["a"])
    )
    ref = await chancy.push_workflow(workflow)
    async with Worker(chancy):
        assert (await chancy.wait_for_workflow(ref, timeout=30)).state is WorkflowStatus.FAILED
    later = datetime.now(UTC) + timedelta(hours=1)
    async with chancy.engine.begin() as connection:
        await MaintenanceRepository().prune_finished_before(
            connection, JobState.SUCCEEDED, later, 100
        )
    # Refused, saying why: "b" would run without the result of "a", pruned.
    with pytest.raises(UnknownWorkflowError, match="retention pruned 1 parent step"):
        await chancy.retry_workflow(ref)
    assert (await states_of(chancy, ref.id)) == {"b": JobState.FAILED}


async def test_retry_of_a_step_whose_unique_key_was_taken_says_so(chancy: Chancy) -> None:
    workflow = Workflow("keyed").step("a", number(1).with_unique_key("k"))
    ref = await chancy.push_workflow(workflow)
    assert await chancy.cancel_workflow(ref) == 1
    await chancy.push(number(2).with_unique_key("k"))
    with pytest.raises(UniqueKeyHeldError):
        await chancy.retry_workflow(ref)
    assert (await states_of(chancy, ref.id)) == {"a": JobState.CANCELLED}


async def test_a_delayed_step_released_early_becomes_scheduled(chancy: Chancy) -> None:
    workflow = (
        Workflow("later")
        .step("a", number(1))
        .step("b", number(2).with_delay(3600), after=["a"])
        .step("c", number(3).with_delay(3600))
    )
    ref = await chancy.push_workflow(workflow)
    assert await states_of(chancy, ref.id) == {
        "a": JobState.PENDING,
        "b": JobState.BLOCKED,
        "c": JobState.SCHEDULED,
    }
    async with Worker(chancy):
        await until_async(lambda: _is(chancy, ref.id, "a", JobState.SUCCEEDED), what="a succeeded")
    assert (await states_of(chancy, ref.id))["b"] is JobState.SCHEDULED


async def _is(chancy: Chancy, workflow_id: int, step: str, state: JobState) -> bool:
    return (await states_of(chancy, workflow_id))[step] is state


async def test_two_steps_sharing_a_unique_key_store_nothing(chancy: Chancy) -> None:
    workflow = (
        Workflow("dup")
        .step("a", number(1).with_unique_key("same"))
        .step("b", number(2).with_unique_key("same"), after=["a"])
    )
    with pytest.raises(UniqueKeyHeldError):
        await chancy.push_workflow(workflow)
    assert await scalar(chancy, "SELECT count(*) FROM chancy_jobs") == 0


async def test_deleting_a_steps_queue_with_force_cancels_its_children(chancy: Chancy) -> None:
    workflow = (
        Workflow("gone")
        .step("a", number(1).with_queue("other"))
        .step("b", number(2), after=["a"])
        .step("c", number(3), after=["b"], always=True)
    )
    ref = await chancy.push_workflow(workflow)
    await chancy.delete_queue("other", force=True)
    state = await chancy.get_workflow(ref)
    assert set(state.steps) == {"b", "c"}
    assert state.steps["b"].state is JobState.CANCELLED
    assert state.steps["b"].errors[-1]["message"] == "upstream step 'a' was deleted"
    assert state.steps["c"].state is JobState.PENDING


async def test_cancel_job_of_a_running_step_cancels_its_blocked_children(
    chancy: Chancy,
) -> None:
    workflow = (
        Workflow("stop")
        .step("a", Job.from_func(workflow_tasks.sleep, kwargs={"seconds": 30.0}))
        .step("b", number(2), after=["a"])
        .step("c", number(3), after=["b"])
        .step("d", number(4), after=["c"], always=True)
    )
    ref = await chancy.push_workflow(workflow)
    async with Worker(chancy):
        await until_async(lambda: _is(chancy, ref.id, "a", JobState.RUNNING), what="running")
        await chancy.cancel_job(ref.steps["a"])
        done = await chancy.wait_for_workflow(ref, timeout=30)
    assert [done.steps[n].state for n in "abcd"] == [
        JobState.CANCELLED,
        JobState.CANCELLED,
        JobState.CANCELLED,
        JobState.SUCCEEDED,
    ]
    assert done.state is WorkflowStatus.CANCELLED


async def test_a_workflow_pushed_in_an_open_transaction_is_invisible_to_workers(
    chancy: Chancy,
) -> None:
    async with Worker(chancy):
        async with chancy.engine.connect() as connection:
            await connection.begin()
            ref = await chancy.push_workflow(
                Workflow("open").step("a", number(1)), session=connection
            )
            await chancy.push(number(5))  # a plain job runs meanwhile: workers are awake
            await until_async(lambda: _count_succeeded(chancy), what="the plain job ran")
            assert (
                await scalar(
                    chancy, "SELECT count(*) FROM chancy_jobs WHERE workflow_id IS NOT NULL"
                )
                == 0
            )
            await connection.commit()
        done = await chancy.wait_for_workflow(ref, timeout=30)
    assert done.state is WorkflowStatus.SUCCEEDED


async def _count_succeeded(chancy: Chancy) -> bool:
    return bool(await scalar(chancy, "SELECT count(*) FROM chancy_jobs WHERE state = 'succeeded'"))


async def test_wait_for_workflow_finishes_by_polling_without_notifications(
    chancy: Chancy,
) -> None:
    ref = await chancy.push_workflow(
        Workflow("quiet").step("a", number(1)).step("b", number(2), after=["a"])
    )
    # Finished behind chancy's back: no notification on its channel.
    dsn = asyncpg_dsn(chancy.engine.url)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "UPDATE chancy_jobs SET state = 'cancelled', completed_at = now() WHERE id = $1",
            ref.steps["a"],
        )
    finally:
        await connection.close()
    done = await chancy.wait_for_workflow(ref, timeout=10)
    assert done.state is WorkflowStatus.CANCELLED
    other = await chancy.push_workflow(Workflow("never").step("a", number(1)))
    with pytest.raises(TimeoutError):
        await chancy.wait_for_workflow(other, timeout=0.3)


# -- least privilege, downgrade ---------------------------------------------------------


async def test_a_dml_only_role_pushes_runs_cancels_retries_and_prunes_workflows(
    dml_url: URL,  # noqa: F811
) -> None:
    queues = [Queue(name="default", polling_interval=0.1)]
    async with Chancy(dml_url, queues=queues) as app:
        workflow = (
            Workflow("role")
            .step("a", number(1))
            .step("b", number(2))
            .step(
                "bad", Job.from_func(workflow_tasks.fail_until, kwargs={"attempt": 2}), after=["a"]
            )
            .step("join", Job.from_func(workflow_tasks.add_parents), after=["bad", "b"])
            .step("clean", number(0), after=["join"], always=True)
        )
        ref = await app.push_workflow(workflow)
        async with Worker(app):
            failed = await app.wait_for_workflow(ref, timeout=30)
            assert failed.state is WorkflowStatus.FAILED
            assert await app.retry_workflow(ref) == 2
            done = await app.wait_for_workflow(ref, timeout=30)
        assert done.state is WorkflowStatus.SUCCEEDED
        other = await app.push_workflow(
            Workflow("x").step("a", number(1)).step("b", number(1), after=["a"])
        )
        assert await app.cancel_workflow(other) == 2
        later = datetime.now(UTC) + timedelta(hours=1)
        async with app.engine.begin() as connection:
            for state in (JobState.SUCCEEDED, JobState.CANCELLED, JobState.FAILED):
                await MaintenanceRepository().prune_finished_before(connection, state, later, 100)
        assert await scalar(app, "SELECT count(*) FROM chancy_workflows") == 0


async def test_downgrade_with_blocked_steps_then_upgrade_again(database_url: URL) -> None:
    async with Chancy(database_url, queues=[Queue(name="default")]) as chancy:
        ref = await chancy.push_workflow(
            Workflow("down").step("a", number(1)).step("b", number(2), after=["a"])
        )
        await migrations.downgrade(chancy.engine, "chancy_0006")
        rows = await _rows(chancy, "SELECT id, state FROM chancy_jobs ORDER BY id")
        assert rows == [(ref.steps["a"], "pending"), (ref.steps["b"], "cancelled")]
        await migrations.upgrade(chancy.engine)
        again = await chancy.push_workflow(
            Workflow("up").step("a", number(1)).step("b", number(2), after=["a"])
        )
        async with Worker(chancy):
            done = await chancy.wait_for_workflow(again, timeout=30)
    assert done.state is WorkflowStatus.SUCCEEDED


async def _rows(chancy: Chancy, sql: str) -> list[tuple[Any, ...]]:
    async with chancy.engine.connect() as connection:
        return [tuple(row) for row in (await connection.execute(sa.text(sql))).all()]


async def test_a_failing_step_with_1999_children_fails_its_workflow(chancy: Chancy) -> None:
    workflow = Workflow("fan-out").step(
        "root", Job.from_func(workflow_tasks.fail, kwargs={"message": "x"})
    )
    job = number(1)
    for index in range(MAX_STEPS - 1):
        workflow = workflow.step(f"c{index}", job, after=["root"])
    ref = await chancy.push_workflow(workflow)
    async with Worker(chancy):
        done = await chancy.wait_for_workflow(ref, timeout=15)
    assert done.state is WorkflowStatus.FAILED
