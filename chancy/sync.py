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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import overload

from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from chancy.app import many_jobs, one_job
from chancy.executor import Job, Reference
from chancy.repository import JobRepository

__all__ = ["push", "push_many"]

_jobs = JobRepository()


@overload
def push(session: Session | Connection, job: Job, /) -> Reference: ...


@overload
def push(session: Session | Connection, queue: str, job: Job, /) -> Reference: ...


def push(session: Session | Connection, queue: str | Job, job: Job | None = None, /) -> Reference:
    """Write a job in ``session``'s transaction: ``push(session, queue, job)`` or
    ``push(session, job)`` (the job's own queue). Returns its :class:`Reference`."""
    (reference,) = _jobs.push_many_sync(session, one_job(queue, job))
    return reference


@overload
def push_many(session: Session | Connection, jobs: Sequence[Job], /) -> list[Reference]: ...


@overload
def push_many(
    session: Session | Connection, queue: str, jobs: Sequence[Job], /
) -> list[Reference]: ...


def push_many(
    session: Session | Connection,
    queue: str | Sequence[Job],
    jobs: Sequence[Job] | None = None,
    /,
) -> list[Reference]:
    """Write many jobs in ``session``'s transaction with one statement; their references
    come back in order."""
    return _jobs.push_many_sync(session, many_jobs(queue, jobs))
