"""Pushing jobs from synchronous code: Flask, Django-style scripts, most SQLAlchemy apps.

These functions need no event loop and no :class:`~chancy.app.Chancy`: they write in the
caller's own ``Session`` or ``Connection``, on whatever driver it uses (psycopg 3,
psycopg2, ...), and commit nothing::

    from chancy.sync import push

    with Session(engine) as session, session.begin():
        session.add(order)
        push(session, "emails", Job.from_func(send_receipt, kwargs={"order": order.id}))
    # committed: the job exists and workers wake; rolled back: it never existed

Run the workers with the async ``chancy worker`` as usual.

As :meth:`Chancy.push <chancy.app.Chancy.push>` does, a push refuses kwargs over
``max_kwargs_bytes`` (default 1 MiB of JSON; None: no limit) before writing anything, and
runs its statements with ``lock_timeout`` and ``statement_timeout`` (seconds, default 5
and 30; None: none set), local to the caller's transaction and undone right after the
push: the caller's later statements keep the caller's own settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType
from typing import overload

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from chancy.database.timeouts import (
    LOCK_TIMEOUT_DEFAULT,
    STATEMENT_TIMEOUT_DEFAULT,
    Timeouts,
    local_timeouts_sync,
)
from chancy.jobs import Job, Reference, many_jobs, one_job
from chancy.models import JobRow
from chancy.queue import Queue
from chancy.repository import PushRepository, QueueRepository, WorkflowRepository
from chancy.repository.push import MAX_KWARGS_BYTES_DEFAULT, check_kwargs_size
from chancy.wakeups import on_engine, thread_wake_ups, wake_after_commit
from chancy.workflow import Workflow, WorkflowReference
from chancy.workflow_client import checked_workflow

__all__ = ["declare", "push", "push_many", "push_workflow"]

_queues = QueueRepository()


def declare(session: Session | Connection, *queues: Queue | str) -> None:
    """Declare ``queues`` in ``session``'s transaction (a :class:`Queue` also stores its
    cluster-wide limits; a name never changes them, and a new queue has none). A job's
    queue must be declared before the job is pushed; ``default`` always is."""
    _queues.declare_many_sync(session, queues)


@overload
def push(
    session: Session | Connection,
    job: Job,
    /,
    *,
    declare: bool = False,
    max_kwargs_bytes: int | None = MAX_KWARGS_BYTES_DEFAULT,
    lock_timeout: float | None = LOCK_TIMEOUT_DEFAULT,
    statement_timeout: float | None = STATEMENT_TIMEOUT_DEFAULT,
) -> Reference: ...


@overload
def push(
    session: Session | Connection,
    queue: str,
    job: Job,
    /,
    *,
    declare: bool = False,
    max_kwargs_bytes: int | None = MAX_KWARGS_BYTES_DEFAULT,
    lock_timeout: float | None = LOCK_TIMEOUT_DEFAULT,
    statement_timeout: float | None = STATEMENT_TIMEOUT_DEFAULT,
) -> Reference: ...


def push(
    session: Session | Connection,
    queue: str | Job,
    job: Job | None = None,
    /,
    *,
    declare: bool = False,
    max_kwargs_bytes: int | None = MAX_KWARGS_BYTES_DEFAULT,
    lock_timeout: float | None = LOCK_TIMEOUT_DEFAULT,
    statement_timeout: float | None = STATEMENT_TIMEOUT_DEFAULT,
) -> Reference:
    """Write a job in ``session``'s transaction: ``push(session, queue, job)`` or
    ``push(session, job)`` (the job's own queue). Returns its :class:`Reference`.
    ``declare=True`` declares the queue first (in the same transaction). The limits
    work as described in this module's docstring."""
    batch = one_job(queue, job)
    timeouts = Timeouts(lock=lock_timeout, statement=statement_timeout)
    check_kwargs_size(batch, max_kwargs_bytes)
    with local_timeouts_sync(session, timeouts):
        if declare:
            queues = QueueRepository(timeouts=timeouts)
            queues.declare_many_sync(session, [batch[0].queue])
        (reference,) = _insert(session, batch, timeouts)
    return reference


@overload
def push_many(
    session: Session | Connection,
    jobs: Sequence[Job],
    /,
    *,
    declare: bool = False,
    max_kwargs_bytes: int | None = MAX_KWARGS_BYTES_DEFAULT,
    lock_timeout: float | None = LOCK_TIMEOUT_DEFAULT,
    statement_timeout: float | None = STATEMENT_TIMEOUT_DEFAULT,
) -> list[Reference]: ...


@overload
def push_many(
    session: Session | Connection,
    queue: str,
    jobs: Sequence[Job],
    /,
    *,
    declare: bool = False,
    max_kwargs_bytes: int | None = MAX_KWARGS_BYTES_DEFAULT,
    lock_timeout: float | None = LOCK_TIMEOUT_DEFAULT,
    statement_timeout: float | None = STATEMENT_TIMEOUT_DEFAULT,
) -> list[Reference]: ...


def push_many(
    session: Session | Connection,
    queue: str | Sequence[Job],
    jobs: Sequence[Job] | None = None,
    /,
    *,
    declare: bool = False,
    max_kwargs_bytes: int | None = MAX_KWARGS_BYTES_DEFAULT,
    lock_timeout: float | None = LOCK_TIMEOUT_DEFAULT,
    statement_timeout: float | None = STATEMENT_TIMEOUT_DEFAULT,
) -> list[Reference]:
    """Write many jobs in ``session``'s transaction with one statement; their references
    come back in order. ``declare`` and the limits work as for :func:`push`."""
    batch = many_jobs(queue, jobs)
    timeouts = Timeouts(lock=lock_timeout, statement=statement_timeout)
    check_kwargs_size(batch, max_kwargs_bytes)
    with local_timeouts_sync(session, timeouts):
        if declare:
            queues = QueueRepository(timeouts=timeouts)
            queues.declare_many_sync(session, sorted({j.queue for j in batch}))
        return _insert(session, batch, timeouts)


def push_workflow(
    session: Session | Connection,
    workflow: Workflow,
    /,
    *,
    declare: bool = False,
    max_kwargs_bytes: int | None = MAX_KWARGS_BYTES_DEFAULT,
    lock_timeout: float | None = LOCK_TIMEOUT_DEFAULT,
    statement_timeout: float | None = STATEMENT_TIMEOUT_DEFAULT,
) -> WorkflowReference:
    """Write ``workflow`` (its steps and their dependencies) in ``session``'s transaction,
    as :meth:`Chancy.push_workflow <chancy.app.Chancy.push_workflow>` does. ``declare``
    and the limits work as for :func:`push`."""
    workflow = checked_workflow(workflow, max_kwargs_bytes)
    timeouts = Timeouts(lock=lock_timeout, statement=statement_timeout)
    sees_commit = isinstance(session, Session) and on_engine(session)
    with local_timeouts_sync(session, timeouts):
        if declare:
            queues = QueueRepository(timeouts=timeouts)
            queues.declare_many_sync(session, sorted({s.job.queue for s in workflow.steps}))
        pushed = WorkflowRepository(timeouts=timeouts).push_sync(
            session, workflow, announce=not sees_commit
        )
    _wake_after_commit(session, pushed.ready_queues, sees_commit)
    return WorkflowReference(pushed.id, MappingProxyType(pushed.steps))


def _wake_after_commit(
    session: Session | Connection, ready_queues: frozenset[str], sees_commit: bool
) -> None:
    """A ``Session`` on an engine wakes the workers once its transaction commits (from a
    thread, :mod:`chancy.wakeups`); a ``Connection``'s push announced itself."""
    if isinstance(session, Session) and sees_commit:
        engine = session.get_bind(JobRow)
        assert isinstance(engine, Engine)
        wake_after_commit(session, thread_wake_ups(engine), ready_queues)


def _insert(session: Session | Connection, batch: list[Job], timeouts: Timeouts) -> list[Reference]:
    """Insert ``batch``; a ``Session`` on an engine wakes the workers once its transaction
    commits (from a thread, :mod:`chancy.wakeups`), a ``Connection``'s push announces
    itself, at its commit."""
    sees_commit = isinstance(session, Session) and on_engine(session)
    pushed = PushRepository(timeouts=timeouts).insert_many_sync(
        session, batch, announce=not sees_commit
    )
    _wake_after_commit(session, pushed.ready_queues, sees_commit)
    return pushed.references
