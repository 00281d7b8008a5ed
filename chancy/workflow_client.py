"""What :class:`~chancy.app.Chancy` does with workflows: push one (in chancy's own
transaction or the application's), read it, wait for it, cancel it, retry it. The
``Chancy`` methods of the same names are the public API; this module keeps ``app.py`` to
jobs and queues."""

from __future__ import annotations

import asyncio
import contextlib
from types import MappingProxyType
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from chancy.database.engine import hot_connection, retry_once
from chancy.database.timeouts import local_timeouts
from chancy.errors import InvalidWorkflowError
from chancy.events import Event, EventKind
from chancy.repository import PushedWorkflow, WorkflowRepository
from chancy.repository.push import CHUNK_BYTES, _json_object, check_kwargs_size
from chancy.wakeups import on_engine, wake_after_commit
from chancy.workflow import Workflow, WorkflowReference, WorkflowState

if TYPE_CHECKING:
    from chancy.app import Chancy, Transaction

__all__ = ["WorkflowClient", "checked_workflow"]


def checked_workflow(workflow: object, max_kwargs_bytes: int | None) -> Workflow:
    """``workflow`` if it can be pushed: a :class:`Workflow` with at least one step whose
    kwargs fit ``max_kwargs_bytes`` each, and all of whose JSON fits one statement."""
    if not isinstance(workflow, Workflow):
        raise InvalidWorkflowError(
            f"push_workflow takes a Workflow, got {type(workflow).__name__}: "
            "Workflow('name').step('first', Job.from_func(fn))"
        )
    if not workflow.steps:
        raise InvalidWorkflowError(
            f"workflow {workflow.name!r} has no step; add them with .step(name, job)"
        )
    jobs = [step.job for step in workflow.steps]
    check_kwargs_size(jobs, max_kwargs_bytes)
    encoded: dict[int, str] = {}
    total = sum(
        len(_json_object(job.kwargs, encoded)) + len(_json_object(job.meta, encoded))
        for job in jobs
    )
    if total > CHUNK_BYTES:
        raise InvalidWorkflowError(
            f"workflow {workflow.name!r} carries {total:,} bytes of kwargs and meta, "
            f"over the {CHUNK_BYTES:,} one workflow may hold (it is written by one "
            "statement): store large data elsewhere and pass its key"
        )
    return workflow


class WorkflowClient:
    """The workflow operations of one :class:`~chancy.app.Chancy`."""

    def __init__(self, chancy: Chancy) -> None:
        self._chancy = chancy
        own = chancy.timeouts if chancy._owns_engine else None
        self._workflows = WorkflowRepository(timeouts=own)
        self._workflows_in_transaction = WorkflowRepository(timeouts=chancy.timeouts)

    async def push(
        self, workflow: Workflow, session: Transaction | None, declare: bool
    ) -> WorkflowReference:
        chancy = self._chancy
        workflow = checked_workflow(workflow, chancy.max_kwargs_bytes)
        await chancy._ready_to_push([step.job for step in workflow.steps], declare)
        if session is None:
            pushed = await retry_once(
                lambda: hot_connection(chancy.engine),
                lambda connection: self._workflows.push(connection, workflow, announce=False),
            )
            chancy.wake_ups.wake(pushed.ready_queues)  # committed: the statement was its own
            return _reference(pushed)
        # As for push(): a session's commit is seen (after_commit), a connection's is not,
        # so its push announces itself, at its commit.
        sees_commit = isinstance(session, AsyncSession) and on_engine(session.sync_session)
        async with local_timeouts(session, chancy.timeouts):
            pushed = await self._workflows_in_transaction.push(
                session, workflow, announce=not sees_commit
            )
        if isinstance(session, AsyncSession) and sees_commit:
            wake_after_commit(session.sync_session, chancy.wake_ups, pushed.ready_queues)
        return _reference(pushed)

    async def get(self, reference: WorkflowReference | int) -> WorkflowState:
        return await retry_once(
            self._chancy.engine.connect,
            lambda connection: self._workflows.get(connection, int(reference)),
            repeatable=True,
        )

    async def wait(
        self, reference: WorkflowReference | int, timeout: float | None, poll_interval: float
    ) -> WorkflowState:
        workflow_id = int(reference)
        state = await self.get(workflow_id)
        steps = {job.id for job in state.steps.values()}
        changed = asyncio.Event()

        def on_event(event: Event) -> None:
            ids = event.get("ids") or ()
            if event.get("event") == EventKind.RECONNECTED or not steps.isdisjoint(ids):
                changed.set()

        unsubscribe = (await self._chancy.listener()).subscribe(on_event)
        try:
            async with asyncio.timeout(timeout):
                while not state.finished:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(changed.wait(), timeout=poll_interval)
                    changed.clear()
                    state = await self.get(workflow_id)
                return state
        finally:
            unsubscribe()

    async def cancel(self, reference: WorkflowReference | int) -> int:
        async with self._chancy.engine.begin() as connection:
            await self._workflows.get(connection, int(reference))  # unknown: says so
            return await self._workflows.cancel(connection, int(reference))

    async def retry(self, reference: WorkflowReference | int) -> int:
        async with self._chancy.engine.begin() as connection:
            await self._workflows.get(connection, int(reference))
            return await self._workflows.retry(connection, int(reference))


def _reference(pushed: PushedWorkflow) -> WorkflowReference:
    return WorkflowReference(pushed.id, MappingProxyType(pushed.steps))
