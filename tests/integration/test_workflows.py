"""Workflows against real PostgreSQL: order, release, failures that propagate, rollback,
cancel, retry and retention."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Literal

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from chancy import sync
from chancy.app import Chancy
from chancy.errors import (
    InvalidWorkflowError,
    UniqueKeyHeldError,
    UnknownQueueError,
    UnknownWorkflowError,
)
from chancy.executor import Job
from chancy.queue import Queue
from chancy.repository import ClaimRepository, MaintenanceRepository
from chancy.states import JobState
from chancy.worker import Worker
from chancy.workflow import Workflow, WorkflowState, WorkflowStatus
from tests.support import workflow_tasks
from tests.support.servers import asyncpg_dsn
from tests.support.waiting import until_async


def number(n: int) -> Job:
    return Job.from_func(workflow_tasks.number, kwargs={"n": n})


def seen() -> Job:
    return Job.from_func(workflow_tasks.parents_seen)


def failing(message: str = "boom") -> Job:
    return Job.from_func(workflow_tasks.fail, kwargs={"message": message})


def diamond(parse: Job | None = None) -> Workflow:
    return (
        Workflow("import-42")
        .step("fetch", number(1))
        .step("parse", parse or number(2), after=["fetch"])
        .step("thumbs", number(3), after=["fetch"])
        .step("publish", seen(), after=["parse", "thumbs"])
        .step("cleanup", seen(), after=["publish"], always=True)
    )


async def table_counts(chancy: Chancy) -> tuple[int, int, int]:
    async with chancy.engine.connect() as connection:
        row = (
            await connection.execute(
                sa.text(
                    "SELECT (SELECT count(*) FROM chancy_workflows), "
                    "(SELECT count(*) FROM chancy_jobs), "
                    "(SELECT count(*) FROM chancy_workflow_edges)"
                )
            )
        ).one()
    return (row[0], row[1], row[2])


def started_after_parents(
    state: WorkflowState, workflow: Workflow, *, but: frozenset[str] = frozenset()
) -> None:
    for step in workflow.steps:
        if step.name in but:
            continue
        job = state.steps[step.name]
        for parent in step.after:
            finished = state.steps[parent].completed_at
            assert job.started_at is not None
            assert finished is not None
            assert job.started_at >= finished, (step.name, parent)


async def test_a_diamond_runs_each_step_after_its_parents(chancy: Chancy) -> None:
    workflow = diamond()
    ref = await chancy.push_workflow(workflow)
    assert set(ref.steps) == {"fetch", "parse", "thumbs", "publish", "cleanup"}
    pushed = await chancy.get_workflow(ref)
    assert pushed.state is WorkflowStatus.RUNNING
    assert pushed.steps["fetch"].state is JobState.PENDING
    assert {pushed.steps[name].state for name in ("parse", "thumbs", "publish", "cleanup")} == {
        JobState.BLOCKED
    }
    async with Worker(chancy):
        done = await chancy.wait_for_workflow(ref, timeout=30)
    assert done.state is WorkflowStatus.SUCCEEDED
    assert done.name == "import-42"
    assert {job.state for job in done.steps.values()} == {JobState.SUCCEEDED}
    started_after_parents(done, workflow)
    assert done.steps["publish"].result == {"parse": 2, "thumbs": 3}
    assert done.steps["cleanup"].result == {"publish": {"parse": 2, "thumbs": 3}}
    assert {job.workflow_id for job in done.steps.values()} == {ref.id}
    assert {job.attempts for job in done.steps.values()} == {1}


async def test_a_failure_cancels_only_its_descendants_and_always_steps_still_run(
    chancy: Chancy,
) -> None:
    workflow = (
        diamond(parse=failing("bad input"))
        .step("index", number(4), after=["thumbs"])
        .step("notify", number(5), after=["publish"])
    )
    ref = await chancy.push_workflow(workflow)
    async with Worker(chancy):
        done = await chancy.wait_for_workflow(ref, timeout=30)
    states = {name: job.state for name, job in done.steps.items()}
    assert states == {
        "fetch": JobState.SUCCEEDED,
        "parse": JobState.FAILED,
        "thumbs": JobState.SUCCEEDED,
        "index": JobState.SUCCEEDED,  # an independent branch runs on
        "publish": JobState.CANCELLED,
        "notify": JobState.CANCELLED,  # a descendant of a descendant
        "cleanup": JobState.SUCCEEDED,  # always: once its parent finished
    }
    assert done.state is WorkflowStatus.FAILED
    for name in ("publish", "notify"):
        (error,) = done.steps[name].errors
        assert error["type"] == "UpstreamFailed"
        assert error["message"] == "upstream step 'parse' failed"
        assert done.steps[name].started_at is None  # never ran
    assert done.steps["cleanup"].result == {"publish": None}


async def test_a_rolled_back_push_leaves_nothing_and_a_committed_one_everything(
    chancy: Chancy,
) -> None:
    await chancy.declare_configured()
    async with AsyncSession(chancy.engine) as session:
        await session.begin()
        await chancy.push_workflow(diamond(), session=session)
        await session.rollback()
    assert await table_counts(chancy) == (0, 0, 0)
    async with AsyncSession(chancy.engine) as session, session.begin():
        ref = await chancy.push_workflow(diamond(), session=session)
    assert await table_counts(chancy) == (1, 5, 5)
    assert (await chancy.get_workflow(ref)).steps["publish"].waiting_on == 2


async def test_a_push_on_the_applications_connection_is_in_its_transaction(
    chancy: Chancy,
) -> None:
    await chancy.declare_configured()
    async with chancy.engine.connect() as connection:
        await connection.begin()
        ref = await chancy.push_workflow(diamond(), session=connection)
        await connection.commit()
    async with Worker(chancy):
        assert (await chancy.wait_for_workflow(ref, timeout=30)).state is (WorkflowStatus.SUCCEEDED)


async def test_retry_workflow_reruns_only_failed_and_cancelled_steps(chancy: Chancy) -> None:
    workflow = diamond(parse=Job.from_func(workflow_tasks.fail_until, kwargs={"attempt": 2}))
    ref = await chancy.push_workflow(workflow)
    async with Worker(chancy):
        failed = await chancy.wait_for_workflow(ref, timeout=30)
        assert failed.state is WorkflowStatus.FAILED
        assert await chancy.retry_workflow(ref) == 2  # parse, and publish cancelled for it
        done = await chancy.wait_for_workflow(ref, timeout=30)
    assert done.state is WorkflowStatus.SUCCEEDED
    for name in ("fetch", "thumbs", "cleanup"):  # succeeded: kept, not run again
        assert done.steps[name].attempts == 1
        assert done.steps[name].started_at == failed.steps[name].started_at
    assert done.steps["parse"].attempts == 2
    assert done.steps["publish"].result == {"parse": 2, "thumbs": 3}
    # cleanup ran once publish was cancelled, before the retry: it is not run again.
    started_after_parents(done, workflow, but=frozenset({"cleanup"}))


async def test_retry_of_a_step_whose_parent_is_also_retried_waits_for_it(
    chancy: Chancy,
) -> None:
    workflow = (
        Workflow("chain")
        .step("a", Job.from_func(workflow_tasks.fail_until, kwargs={"attempt": 2}))
        .step("b", number(2), after=["a"])
        .step("c", number(3), after=["b"])
    )
    ref = await chancy.push_workflow(workflow)
    async with Worker(chancy):
        await chancy.wait_for_workflow(ref, timeout=30)
    assert await chancy.retry_workflow(ref) == 3
    state = await chancy.get_workflow(ref)
    assert [state.steps[name].state for name in "abc"] == [
        JobState.PENDING,
        JobState.BLOCKED,
        JobState.BLOCKED,
    ]
    async with Worker(chancy):
        done = await chancy.wait_for_workflow(ref, timeout=30)
    assert done.state is WorkflowStatus.SUCCEEDED
    started_after_parents(done, workflow)


async def test_cancel_workflow_cancels_every_unfinished_step(chancy: Chancy) -> None:
    workflow = (
        Workflow("slow")
        .step("wait", Job.from_func(workflow_tasks.sleep, kwargs={"seconds": 30.0}))
        .step("then", number(1), after=["wait"])
        .step("cleanup", number(2), after=["then"], always=True)
    )
    ref = await chancy.push_workflow(workflow)
    async with Worker(chancy):
        await until_async(
            lambda: _state_of(chancy, ref.id, "wait", JobState.RUNNING), what="running"
        )
        assert await chancy.cancel_workflow(ref) == 3
        done = await chancy.wait_for_workflow(ref, timeout=10)
    assert done.state is WorkflowStatus.CANCELLED
    assert {job.state for job in done.steps.values()} == {JobState.CANCELLED}
    assert await chancy.cancel_workflow(ref) == 0


async def _state_of(chancy: Chancy, workflow_id: int, step: str, state: JobState) -> bool:
    return (await chancy.get_workflow(workflow_id)).steps[step].state is state


async def test_cancelling_a_blocked_step_cancels_its_descendants(chancy: Chancy) -> None:
    ref = await chancy.push_workflow(diamond())
    await chancy.cancel_job(ref.steps["parse"])
    state = await chancy.get_workflow(ref)
    assert state.steps["publish"].state is JobState.CANCELLED
    assert state.steps["publish"].errors[0]["message"] == "upstream step 'parse' cancelled"
    # always: released once its parent finished, whatever the outcome
    assert (state.steps["cleanup"].state, state.steps["cleanup"].waiting_on) == (
        JobState.PENDING,
        0,
    )


async def test_unknown_workflows_say_so(chancy: Chancy) -> None:
    with pytest.raises(UnknownWorkflowError, match="no workflow has the id 424242"):
        await chancy.get_workflow(424242)
    with pytest.raises(UnknownWorkflowError):
        await chancy.cancel_workflow(424242)
    with pytest.raises(UnknownWorkflowError):
        await chancy.retry_workflow(424242)


async def test_a_step_in_an_undeclared_queue_stores_nothing(chancy: Chancy) -> None:
    workflow = diamond().step("lost", number(9).with_queue("nowhere"), after=["fetch"])
    with pytest.raises(UnknownQueueError, match="'nowhere' is not declared"):
        await chancy.push_workflow(workflow)
    assert await table_counts(chancy) == (0, 0, 0)


async def test_a_step_whose_unique_key_is_held_stores_nothing(chancy: Chancy) -> None:
    await chancy.push(number(0).with_unique_key("k"))
    workflow = diamond().step("keyed", number(9).with_unique_key("k"), after=["fetch"])
    with pytest.raises(UniqueKeyHeldError, match="'keyed'"):
        await chancy.push_workflow(workflow)
    assert await table_counts(chancy) == (0, 1, 0)


async def test_an_empty_workflow_is_refused(chancy: Chancy) -> None:
    with pytest.raises(InvalidWorkflowError, match="has no step"):
        await chancy.push_workflow(Workflow("empty"))
    with pytest.raises(InvalidWorkflowError, match="takes a Workflow"):
        await chancy.push_workflow(number(1))  # type: ignore[arg-type]


async def test_a_step_is_released_exactly_once_when_its_parents_finish_together(
    database_url: URL,
) -> None:
    # Two parents finished by two transactions at the same instant: the second waits for
    # the first's lock on the child, then sees its count.
    async with Chancy(database_url, queues=[Queue(name="default")]) as chancy:
        workflow = (
            Workflow("fan-in")
            .step("a", number(1))
            .step("b", number(2))
            .step("join", number(3), after=["a", "b"])
        )
        ref = await chancy.push_workflow(workflow)
    dsn = asyncpg_dsn(database_url)
    first, second = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    finish = "UPDATE chancy_jobs SET state = 'succeeded', completed_at = now() WHERE id = $1"
    try:
        await first.execute("BEGIN")
        await second.execute("BEGIN")
        await first.execute(finish, ref.steps["a"])
        waiting = asyncio.ensure_future(second.execute(finish, ref.steps["b"]))
        await asyncio.sleep(0.2)
        assert not waiting.done()  # on the child's row lock
        await first.execute("COMMIT")
        await waiting
        await second.execute("COMMIT")
        row = await first.fetchrow(
            "SELECT state, waiting_on FROM chancy_jobs WHERE id = $1", ref.steps["join"]
        )
    finally:
        await first.close()
        await second.close()
    assert row is not None
    assert (row["state"], row["waiting_on"]) == ("pending", 0)


async def test_retention_keeps_an_unfinished_workflow_whole_and_prunes_a_finished_one(
    chancy: Chancy,
) -> None:
    long = (
        Workflow("long")
        .step("done", number(1))
        .step(
            "wait",
            Job.from_func(workflow_tasks.sleep, kwargs={"seconds": 60.0}).with_queue("other"),
        )
    )
    short = Workflow("short").step("one", number(1)).step("two", number(2), after=["one"])
    long_ref = await chancy.push_workflow(long)
    short_ref = await chancy.push_workflow(short)
    async with Worker(chancy):
        await chancy.wait_for_workflow(short_ref, timeout=30)
        await until_async(
            lambda: _state_of(chancy, long_ref.id, "done", JobState.SUCCEEDED), what="done"
        )
        maintenance = MaintenanceRepository()
        later = datetime.now(UTC) + timedelta(hours=1)
        async with chancy.engine.begin() as connection:
            pruned = await maintenance.prune_finished_before(
                connection, JobState.SUCCEEDED, later, 100
            )
        assert pruned == 2  # the short workflow's steps
        state = await chancy.get_workflow(long_ref)
        assert set(state.steps) == {"done", "wait"}  # kept: "wait" runs on
        with pytest.raises(UnknownWorkflowError):
            await chancy.get_workflow(short_ref)
        assert await table_counts(chancy) == (1, 2, 0)
        await chancy.cancel_workflow(long_ref)


@pytest.mark.parametrize("executor", ["threads", "processes"])
async def test_steps_read_their_parents_results_on_every_executor(
    database_url: URL, executor: Literal["threads", "processes"]
) -> None:
    queue = Queue(name="default", concurrency=2, executor=executor, polling_interval=0.1)
    async with Chancy(database_url, queues=[queue]) as chancy:
        ref = await chancy.push_workflow(diamond())
        async with Worker(chancy):
            done = await chancy.wait_for_workflow(ref, timeout=60)
    assert done.state is WorkflowStatus.SUCCEEDED
    assert done.steps["publish"].result == {"parse": 2, "thumbs": 3}


def test_a_synchronous_push_is_in_the_sessions_transaction(database_url: URL) -> None:
    engine = sa.create_engine(database_url.set(drivername="postgresql+psycopg"))
    try:
        with Session(engine) as session, session.begin():
            sync.declare(session, "default")
        with Session(engine) as session:
            session.begin()
            sync.push_workflow(session, diamond())
            session.rollback()
        with Session(engine) as session, session.begin():
            ref = sync.push_workflow(session, diamond())
        with engine.connect() as connection:
            states: dict[str, str] = dict(
                connection.execute(
                    sa.text("SELECT step, state FROM chancy_jobs WHERE workflow_id = :id"),
                    {"id": ref.id},
                ).all()
            )
            workflows = connection.execute(sa.text("SELECT count(*) FROM chancy_workflows"))
            assert workflows.scalar_one() == 1
    finally:
        engine.dispose()
    assert states == {
        "fetch": "pending",
        "parse": "blocked",
        "thumbs": "blocked",
        "publish": "blocked",
        "cleanup": "blocked",
    }
    assert set(ref.steps) == set(states)


async def test_a_step_the_rescuer_fails_cancels_its_children(chancy: Chancy) -> None:
    # The step's worker died with its last attempt: its lease expires, the rescuer fails it,
    # and the same statement cancels what waited for it (the always step is released).
    workflow = (
        Workflow("rescued")
        .step("a", number(1))
        .step("b", number(2), after=["a"])
        .step("cleanup", number(3), after=["b"], always=True)
    )
    ref = await chancy.push_workflow(workflow)
    async with chancy.engine.begin() as connection:
        (job,) = await ClaimRepository().claim_available(connection, "default", 1, "gone")
        assert job.id == ref.steps["a"]
        await connection.execute(
            sa.text(
                "UPDATE chancy_jobs SET lease_expires_at = now() - interval '1 s' WHERE id = :id"
            ),
            {"id": job.id},
        )
    async with chancy.engine.begin() as connection:
        rescued = await MaintenanceRepository().rescue_expired_many(connection, 10)
    assert rescued == {ref.steps["a"]: JobState.FAILED}
    state = await chancy.get_workflow(ref)
    assert state.steps["b"].state is JobState.CANCELLED
    assert state.steps["b"].errors[0]["message"] == "upstream step 'a' failed"
    assert state.steps["cleanup"].state is JobState.PENDING
