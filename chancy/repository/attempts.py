"""The attempts a worker holds: their outcomes, their leases, giving them back.

Every statement here is fenced by ``state = 'running' AND fence = :fence``: a write from
an attempt that no longer holds its job (its lease expired and another worker took over,
the job was cancelled, or its claim was lost in a server crash) matches no row and
changes nothing. The fence is the random token drawn at the attempt's claim, never
``attempts``: that count may come back after a crash, a random token does not.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from chancy.repository.announce import announce_finished, wake_queues
from chancy.repository.base import Repository
from chancy.repository.runner import (
    Executable,
    HotExecutable,
    Statement,
    SyncExecutable,
)
from chancy.repository.tables import (
    PENDING,
    RETRYING,
    RUNNING,
    SCHEDULED,
    SECOND,
    SUCCEEDED,
    jobs,
)
from chancy.states import JobState

__all__ = ["Attempt", "AttemptRepository", "Completion", "Outcome"]


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt ended, as the worker reports it.

    ``state`` is ``succeeded`` (with ``result``, any JSON value), ``retrying`` (with
    ``error`` and ``retry_in`` seconds), ``scheduled`` (a deferral: as ``retrying``, but
    the attempt is given back, not used) or ``failed``/``cancelled`` (with ``error``).
    ``error`` is the JSON object appended to the job's ``errors``. ``result_json``, when
    given, is ``result`` already serialised (so it is written without encoding it again).
    ``fence`` is the attempt's fencing token (its write is refused if the job no longer
    holds it); ``attempt``, its number, for messages. ``snoozed``: a ``scheduled`` outcome
    that the job asked for (``raise Snooze``): its attempt given back and counted in
    ``snoozes`` instead. ``context_completed``: the job called
    ``JobContext.complete_in`` in this attempt, so the job may have succeeded already
    (then this outcome is refused, as it should be).
    """

    id: int
    fence: int | None
    state: JobState
    result: Any = None
    error: Mapping[str, Any] | None = None
    retry_in: float | None = None
    result_json: str | None = None
    attempt: int = 0
    snoozed: bool = False
    context_completed: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Completion:
    """What ``JobContext.complete_in`` stores: the result (as JSON text, or None) and the
    latest progress the attempt reported, if any."""

    result_json: str | None = None
    progress: float | None = None
    progress_message: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Attempt:
    """One running attempt a worker holds: the job id and its fencing token."""

    id: int
    fence: int | None


# The state a snooze's outcome sends: stored as `scheduled` (never as itself).
_SNOOZED_STATE = "snoozed"
_SNOOZED: sa.ColumnElement[Any] = sa.literal_column(f"'{_SNOOZED_STATE}'")


def _complete_statement() -> sa.Executable:
    """Write a batch of attempt outcomes (parallel arrays); returns the ids written."""
    outcome = (
        sa.func.unnest(
            sa.bindparam("p_ids", type_=ARRAY(sa.BigInteger)),
            sa.bindparam("p_fences", type_=ARRAY(sa.BigInteger)),
            sa.bindparam("p_states", type_=ARRAY(sa.Text)),
            sa.bindparam("p_results", type_=ARRAY(sa.Text)),
            sa.bindparam("p_errors", type_=ARRAY(sa.Text)),
            sa.bindparam("p_retry_in", type_=ARRAY(sa.Double)),
        )
        .table_valued("id", "fence", "state", "result", "error", "retry_in")
        .render_derived("outcome")
    )
    snoozed = outcome.c.state == _SNOOZED
    deferred = sa.or_(outcome.c.state == SCHEDULED, snoozed)
    # A deferral gives its attempt back (the count only: the next claim draws a new fence);
    # so does a snooze, counted in `snoozes` instead.
    retrying = sa.or_(outcome.c.state == RETRYING, deferred)
    error_entry = sa.func.jsonb_build_object("at", sa.func.now()).op("||")(
        sa.cast(outcome.c.error, JSONB)
    )
    done = (
        sa.update(jobs)
        .where(
            jobs.c.id == outcome.c.id,
            jobs.c.state == RUNNING,
            jobs.c.fence == outcome.c.fence,
        )
        .values(
            state=sa.case((snoozed, SCHEDULED), else_=outcome.c.state),
            attempts=sa.case((deferred, jobs.c.attempts - 1), else_=jobs.c.attempts),
            snoozes=sa.case((snoozed, jobs.c.snoozes + 1), else_=jobs.c.snoozes),
            result=sa.cast(outcome.c.result, JSONB),
            errors=sa.case(
                (outcome.c.error.is_(None), jobs.c.errors),
                else_=jobs.c.errors.op("||")(sa.func.jsonb_build_array(error_entry)),
            ),
            completed_at=sa.case((retrying, None), else_=sa.func.now()),
            scheduled_at=sa.case(
                (retrying, sa.func.now() + SECOND * outcome.c.retry_in),
                else_=jobs.c.scheduled_at,
            ),
            lease_expires_at=None,
        )
        .returning(jobs.c.id, jobs.c.state)
        .cte("done")
    )
    announced = announce_finished(done)
    return sa.select(done.c.id).select_from(done.join(announced, sa.true()))


def _held() -> sa.TableValuedAlias:
    """The attempts given as parallel arrays of ids and fencing tokens."""
    return (
        sa.func.unnest(
            sa.bindparam("p_ids", type_=ARRAY(sa.BigInteger)),
            sa.bindparam("p_fences", type_=ARRAY(sa.BigInteger)),
        )
        .table_valued("id", "fence")
        .render_derived("held")
    )


def _extend_leases_statement() -> sa.Executable:
    """Extend the leases of the attempts a worker still runs; returns the ids it still
    holds (a job missing from the result was cancelled or taken over)."""
    held = _held()
    return (
        sa.update(jobs)
        .where(jobs.c.id == held.c.id, jobs.c.state == RUNNING, jobs.c.fence == held.c.fence)
        .values(lease_expires_at=sa.func.now() + SECOND * sa.bindparam("p_lease_seconds"))
        .returning(jobs.c.id)
    )


def _release_statement() -> sa.Executable:
    """Give running attempts back (a worker stopping): the jobs are ready again at once,
    keeping their attempt count, with one more attempt allowed: an attempt given back
    never ran to an end, so it does not use up what the job was allowed (``job show``
    then reads "2 of 2", not "2 of 1")."""
    held = _held()
    released = (
        sa.update(jobs)
        .where(jobs.c.id == held.c.id, jobs.c.state == RUNNING, jobs.c.fence == held.c.fence)
        .values(
            state=PENDING,
            lease_expires_at=None,
            worker_id=None,
            max_attempts=jobs.c.max_attempts + 1,
        )
        .returning(jobs.c.id, jobs.c.queue, jobs.c.state)
        .cte("released")
    )
    woken = wake_queues(released)
    return sa.select(released.c.id).select_from(released.join(woken, sa.true()))


def _unclaim_statement() -> sa.Executable:
    """Undo the claims of one claimer whose jobs never started (:func:`chancy.testing.drain`
    at its end: the jobs it held back, and one whose claim it never saw because it was
    cancelled meanwhile): ready again, as before the claim, the attempt not counted."""
    unclaimed = (
        sa.update(jobs)
        .where(jobs.c.worker_id == sa.bindparam("p_worker_id", type_=sa.Text))
        .where(jobs.c.state == RUNNING)
        .values(
            state=PENDING,
            attempts=jobs.c.attempts - 1,
            started_at=sa.case((jobs.c.attempts == 1, None), else_=jobs.c.started_at),
            lease_expires_at=None,
            worker_id=None,
        )
        .returning(jobs.c.id, jobs.c.queue, jobs.c.state)
        .cte("unclaimed")
    )
    woken = wake_queues(unclaimed)
    return sa.select(unclaimed.c.id).select_from(unclaimed.join(woken, sa.true()))


def _complete_in_statement() -> sa.Executable:
    """Mark one attempt succeeded in the caller's transaction (``JobContext.complete_in``),
    with its result and the latest progress it reported (if any, else the stored one
    stays); returns its id if the attempt still held the job."""
    fraction = sa.bindparam("p_progress", type_=sa.Double)
    done = (
        sa.update(jobs)
        .where(
            jobs.c.id == sa.bindparam("p_id", type_=sa.BigInteger),
            jobs.c.state == RUNNING,
            jobs.c.fence == sa.bindparam("p_fence", type_=sa.BigInteger),
        )
        .values(
            state=SUCCEEDED,
            result=sa.cast(sa.bindparam("p_result", type_=sa.Text), JSONB),
            completed_at=sa.func.now(),
            lease_expires_at=None,
            progress=sa.func.coalesce(fraction, jobs.c.progress),
            progress_message=sa.case(
                (fraction.is_(None), jobs.c.progress_message),
                else_=sa.bindparam("p_progress_message", type_=sa.Text),
            ),
            progress_at=sa.case((fraction.is_(None), jobs.c.progress_at), else_=sa.func.now()),
        )
        .returning(jobs.c.id, jobs.c.state)
        .cte("done")
    )
    announced = announce_finished(done)
    return sa.select(done.c.id).select_from(done.join(announced, sa.true()))


def _progress_statement() -> sa.Executable:
    """Store one running attempt's latest progress; returns its id if it still holds the
    job (a stale attempt's progress changes nothing)."""
    return (
        sa.update(jobs)
        .where(
            jobs.c.id == sa.bindparam("p_id", type_=sa.BigInteger),
            jobs.c.state == RUNNING,
            jobs.c.fence == sa.bindparam("p_fence", type_=sa.BigInteger),
        )
        .values(
            progress=sa.bindparam("p_progress", type_=sa.Double),
            progress_message=sa.bindparam("p_progress_message", type_=sa.Text),
            progress_at=sa.func.now(),
        )
        .returning(jobs.c.id)
    )


def _succeeded_statement() -> sa.Executable:
    """The attempts whose job succeeded under their own fence: completed by
    ``JobContext.complete_in`` in the attempt itself."""
    held = _held()
    return sa.select(jobs.c.id).where(
        jobs.c.id == held.c.id, jobs.c.fence == held.c.fence, jobs.c.state == SUCCEEDED
    )


_COMPLETE = Statement(_complete_statement(), what="writing the outcomes of jobs")
_COMPLETE_IN = Statement(_complete_in_statement(), what="completing the job in a transaction")
_PROGRESS = Statement(_progress_statement(), what="storing the progress of a job")
_SUCCEEDED = Statement(_succeeded_statement(), what="reading the outcomes of jobs")
_EXTEND_LEASES = Statement(_extend_leases_statement(), what="renewing the leases of jobs")
_RELEASE = Statement(_release_statement(), what="giving jobs back")
_UNCLAIM = Statement(_unclaim_statement(), what="giving jobs back")


class AttemptRepository(Repository):
    """Outcomes and leases of running attempts."""

    async def complete_many_if_running(
        self, conn: HotExecutable, outcomes: Sequence[Outcome]
    ) -> set[int]:
        """Write the outcomes of attempts; returns the ids written. An outcome whose
        attempt no longer holds its job (a stale worker) is not written."""
        if not outcomes:
            return set()
        dumps = json.dumps
        parameters = {
            "p_ids": [o.id for o in outcomes],
            "p_fences": [o.fence for o in outcomes],
            "p_states": [_SNOOZED_STATE if o.snoozed else o.state.value for o in outcomes],
            "p_results": [
                o.result_json if o.result_json is not None else _json_or_none(o.result)
                for o in outcomes
            ],
            "p_errors": [None if o.error is None else dumps(dict(o.error)) for o in outcomes],
            "p_retry_in": [o.retry_in for o in outcomes],
        }
        rows = await _COMPLETE.rows(conn, parameters, timeouts=self.timeouts)
        return {row["id"] for row in rows}

    async def extend_leases_many(
        self, conn: HotExecutable, attempts: Sequence[Attempt], lease_seconds: float
    ) -> set[int]:
        """Extend the leases of ``attempts``; returns the ids still held."""
        if not attempts:
            return set()
        parameters = {**_attempt_arrays(attempts), "p_lease_seconds": lease_seconds}
        rows = await _EXTEND_LEASES.rows(conn, parameters, timeouts=self.timeouts)
        return {row["id"] for row in rows}

    async def release_many_if_running(
        self, conn: HotExecutable, attempts: Sequence[Attempt]
    ) -> set[int]:
        """Make the jobs of ``attempts`` ready again at once; returns the ids released."""
        if not attempts:
            return set()
        rows = await _RELEASE.rows(conn, _attempt_arrays(attempts), timeouts=self.timeouts)
        return {row["id"] for row in rows}

    async def complete_in(self, conn: Executable, attempt: Attempt, completion: Completion) -> bool:
        """Mark ``attempt`` succeeded in ``conn``'s transaction (which the caller commits
        or rolls back); False, writing nothing, when the attempt no longer holds its job."""
        parameters = _completion_parameters(attempt, completion)
        return bool(await _COMPLETE_IN.rows(conn, parameters, timeouts=self.timeouts))

    def complete_in_sync(
        self, conn: SyncExecutable, attempt: Attempt, completion: Completion
    ) -> bool:
        """:meth:`complete_in` on a synchronous connection or session."""
        parameters = _completion_parameters(attempt, completion)
        return bool(_COMPLETE_IN.rows_sync(conn, parameters, timeouts=self.timeouts))

    async def store_progress(
        self, conn: HotExecutable, attempt: Attempt, fraction: float, message: str | None
    ) -> bool:
        """Store ``attempt``'s progress; False when it no longer holds its job."""
        parameters = {
            "p_id": attempt.id,
            "p_fence": attempt.fence,
            "p_progress": fraction,
            "p_progress_message": message,
        }
        return bool(await _PROGRESS.rows(conn, parameters, timeouts=self.timeouts))

    async def succeeded_many(self, conn: HotExecutable, attempts: Sequence[Attempt]) -> set[int]:
        """The ids of ``attempts`` whose job succeeded under the attempt's own fence."""
        if not attempts:
            return set()
        rows = await _SUCCEEDED.rows(conn, _attempt_arrays(attempts), timeouts=self.timeouts)
        return {row["id"] for row in rows}

    async def unclaim_all_of(self, conn: HotExecutable, worker_id: str) -> set[int]:
        """Make the running jobs ``worker_id`` claimed, none of which it started (it
        must know that), ready again as they were before the claim (the attempt not
        counted); returns the ids given back."""
        rows = await _UNCLAIM.rows(conn, {"p_worker_id": worker_id}, timeouts=self.timeouts)
        return {row["id"] for row in rows}


def _json_or_none(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _attempt_arrays(attempts: Sequence[Attempt]) -> dict[str, list[int | None]]:
    return {"p_ids": [a.id for a in attempts], "p_fences": [a.fence for a in attempts]}


def _completion_parameters(attempt: Attempt, completion: Completion) -> dict[str, Any]:
    return {
        "p_id": attempt.id,
        "p_fence": attempt.fence,
        "p_result": completion.result_json,
        "p_progress": completion.progress,
        "p_progress_message": completion.progress_message,
    }
