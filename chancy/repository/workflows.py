"""Workflows: pushing one (its row, its steps and their edges in one statement), reading,
cancelling and retrying it, and the parents' results a step receives.

Releasing a step when its parents finish is not here: a trigger does it, in whatever
statement finishes a parent (:mod:`chancy.schema_functions`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError

from chancy.database.timeouts import Timeouts
from chancy.errors import UniqueKeyHeldError, UnknownWorkflowError
from chancy.jobs import JOB_FIELDS, QueuedJob
from chancy.models import state_in
from chancy.repository.announce import announce_finished, wake_queues
from chancy.repository.base import Repository
from chancy.repository.maintenance import key_taken_meanwhile, retried_values
from chancy.repository.push import (
    _QUEUE_NAMES,
    _autocommits,
    _is_unknown_queue,
    _mark_keyed,
    _parameter_type,
    _push_parameters,
    batch_of,
    known_queues,
    row_values,
    unknown_queue,
)
from chancy.repository.runner import (
    UNIQUE_VIOLATION,
    HotExecutable,
    Statement,
    SyncExecutable,
    sqlstate_of,
)
from chancy.repository.tables import (
    BLOCKED,
    CANCELLED,
    PENDING,
    jobs,
    workflow_edges,
    workflows,
)
from chancy.states import UNFINISHED_STATES, JobState
from chancy.workflow import Workflow, WorkflowState

__all__ = ["PushedWorkflow", "WorkflowRepository", "with_parent_results"]

_WHAT = "the workflow's push"
# Per step, beside the job's fields.
_STEP_TYPES: dict[str, sa.types.TypeEngine[Any]] = {
    "step": sa.Text(),
    "always": sa.Boolean(),
    "waiting_on": sa.Integer(),
}


class PushedWorkflow(NamedTuple):
    """What a workflow's push stored: its id, each step's job id by step name, and the
    queues in which it made a step ready (to wake once the transaction commits)."""

    id: int
    steps: dict[str, int]
    ready_queues: frozenset[str]


def _push_statement(columns: frozenset[str], *, announce: bool) -> sa.Executable:
    """INSERT of a workflow's row, its steps (as the push of a batch, with the step's
    name, ``always`` and the number of parents it waits for: ``blocked`` while that is
    above zero) and its edges, in one statement: all are stored or none. A step's unique
    key held by an unfinished job fails the statement (a step is always a new job). With
    ``announce``, the statement sends ``pushed`` for the queues of the steps it made
    ready (see :func:`chancy.repository.push._push_statement`)."""
    types = {name: _parameter_type(name) for name in JOB_FIELDS if name in columns}
    batch = batch_of({**types, **_STEP_TYPES}, single=False)
    workflow = (
        sa.insert(workflows)
        .values(name=sa.bindparam("p_workflow_name", type_=sa.Text))
        .returning(workflows.c.id, workflows.c.created_at)
        .cte("workflow")
    )
    values = row_values(batch, columns, known_queues(), waiting_on=batch.c.waiting_on)
    values["workflow_id"] = sa.select(workflow.c.id).scalar_subquery()
    for name in _STEP_TYPES:
        values[name] = batch.c[name]
    keyed = bool({"concurrency_key", "rate_key"} & columns)
    inserted = (
        pg_insert(jobs)
        .from_select(list(values), sa.select(*values.values()))
        .returning(
            jobs.c.id,
            jobs.c.step,
            jobs.c.state,
            jobs.c.queue,
            *((jobs.c.concurrency_key, jobs.c.rate_key) if keyed else ()),
        )
        .cte("inserted")
    )
    edge = (
        sa.func.unnest(
            sa.cast(sa.bindparam("p_edge_children", type_=ARRAY(sa.Text)), ARRAY(sa.Text)),
            sa.cast(sa.bindparam("p_edge_parents", type_=ARRAY(sa.Text)), ARRAY(sa.Text)),
        )
        .table_valued("child", "parent")
        .render_derived("edge")
    )
    child, parent = inserted.alias("child"), inserted.alias("parent")
    edges = (
        sa.insert(workflow_edges)
        .from_select(
            ["child_id", "parent_id"],
            sa.select(child.c.id, parent.c.id).select_from(
                edge.join(child, child.c.step == edge.c.child).join(
                    parent, parent.c.step == edge.c.parent
                )
            ),
        )
        .returning(workflow_edges.c.child_id)
        .cte("edges")
    )
    written = sa.select(sa.func.count().label("n")).select_from(edges).cte("written_edges")
    result: sa.FromClause = inserted.join(workflow, sa.true()).join(written, sa.true())
    if announce:
        result = result.join(wake_queues(inserted), sa.true())
    if keyed:
        result = result.join(_mark_keyed(inserted), sa.true())
    return sa.select(
        workflow.c.id.label("workflow_id"),
        inserted.c.id,
        inserted.c.step,
        inserted.c.state,
        inserted.c.queue,
    ).select_from(result)


_PUSH_STATEMENTS: dict[tuple[frozenset[str], bool], Statement] = {}


def _push_statement_for(columns: frozenset[str], *, announce: bool) -> Statement:
    key = (columns, announce)
    statement = _PUSH_STATEMENTS.get(key)
    if statement is None:
        construct = _push_statement(columns, announce=announce)
        statement = _PUSH_STATEMENTS[key] = Statement(construct, what=_WHAT)
    return statement


def _push_parameters_of(workflow: Workflow) -> tuple[frozenset[str], dict[str, Any]]:
    """The statement's columns and parameters for ``workflow``'s steps."""
    steps = workflow.steps
    columns, arrays = _push_parameters([step.job for step in steps], {})
    parameters: dict[str, Any] = dict(arrays)
    parameters["p_queues"] = sorted({step.job.queue for step in steps})
    parameters["p_workflow_name"] = workflow.name
    parameters["p_step"] = [step.name for step in steps]
    parameters["p_always"] = [step.always for step in steps]
    parameters["p_waiting_on"] = [len(step.after) for step in steps]
    parameters["p_edge_children"] = [step.name for step in steps for _ in step.after]
    parameters["p_edge_parents"] = [parent for step in steps for parent in step.after]
    return columns, parameters


def _refused(exc: DBAPIError, workflow: Workflow, known: Sequence[str]) -> Exception:
    """The error for a workflow's push the server refused: an undeclared queue (the
    closest of the ``known`` queues named), or a step's unique key held by an unfinished
    job (a step is always a new job); else ``exc`` itself."""
    if _is_unknown_queue(exc):
        return unknown_queue([step.job for step in workflow.steps], known)
    if sqlstate_of(exc) == UNIQUE_VIOLATION:
        keyed = [step.name for step in workflow.steps if step.job.unique_key is not None]
        return UniqueKeyHeldError(
            f"workflow {workflow.name!r} was not stored: the unique key of one of its steps "
            f"{keyed} is held by an unfinished job, or two of its steps share one. A "
            "workflow's steps are new jobs: give them keys no unfinished job holds"
        )
    return exc


def _pushed(rows: Sequence[Any]) -> PushedWorkflow:
    ready = frozenset(row["queue"] for row in rows if row["state"] == JobState.PENDING.value)
    steps = {row["step"]: row["id"] for row in sorted(rows, key=lambda row: row["id"])}
    return PushedWorkflow(rows[0]["workflow_id"], steps, ready)


_GET = Statement(
    sa.select(
        workflows.c.name.label("workflow_name"),
        workflows.c.created_at.label("workflow_created_at"),
        *jobs.c,
    )
    .select_from(workflows.outerjoin(jobs, jobs.c.workflow_id == workflows.c.id))
    .where(workflows.c.id == sa.bindparam("p_id"))
    .order_by(jobs.c.id),
    what="reading the workflow",
)


def _steps_of_workflow() -> sa.ColumnElement[bool]:
    """``chancy_jobs.id`` is a step of the workflow ``p_id``: the ids are read through
    ``ix_chancy_jobs_workflow_id`` first, then each row by primary key, so a state filter
    beside it can never lead the planner to scan every unfinished job."""
    step = jobs.alias("step")
    steps = sa.select(step.c.id).where(step.c.workflow_id == sa.bindparam("p_id"))
    return jobs.c.id == sa.func.any(sa.func.array(steps.scalar_subquery()))


def _cancel_statement() -> sa.Executable:
    """Cancel every unfinished step of a workflow (running ones are told to stop by the
    ``finished`` event, and their late outcomes are fenced off by the state)."""
    cancelled = (
        sa.update(jobs)
        .where(_steps_of_workflow(), sa.literal_column(state_in(UNFINISHED_STATES)))
        .values(state=CANCELLED, completed_at=sa.func.now(), lease_expires_at=None)
        .returning(jobs.c.id, jobs.c.state)
        .cte("cancelled")
    )
    announced = announce_finished(cancelled)
    return sa.select(sa.func.count(cancelled.c.id).label("n")).select_from(
        cancelled.join(announced, sa.true(), full=True)
    )


_CANCEL = Statement(_cancel_statement(), what="cancelling the workflow")
# Retrying: first every step of the workflow is locked (a step finishing meanwhile waits,
# then releases what the retry blocked; the retry's next statement sees every outcome
# committed before it), then the failed and cancelled steps are put back.
_LOCK_STEPS = Statement(
    sa.select(jobs.c.id).where(_steps_of_workflow()).order_by(jobs.c.id).with_for_update(),
    what="retrying the workflow",
)


def _retry_statement() -> sa.Executable:
    """Put a workflow's failed and cancelled steps back: ready if every parent succeeded,
    else ``blocked`` on the parents that have not (which are put back too, or still
    running), each with one more attempt allowed; succeeded steps keep their results."""
    parent = jobs.alias("parent")
    again = (
        sa.select(jobs.c.id)
        .where(
            _steps_of_workflow(),
            sa.literal_column(state_in({JobState.FAILED, JobState.CANCELLED})),
        )
        .cte("again")
    )
    waits = (
        sa.select(
            again.c.id,
            sa.func.count(parent.c.id)
            .filter(parent.c.state != JobState.SUCCEEDED.value)
            .label("n"),
        )
        .select_from(
            again.outerjoin(workflow_edges, workflow_edges.c.child_id == again.c.id).outerjoin(
                parent, parent.c.id == workflow_edges.c.parent_id
            )
        )
        .group_by(again.c.id)
        .cte("waits")
    )
    retried = (
        sa.update(jobs)
        .where(jobs.c.id == waits.c.id)
        .values(
            {
                **retried_values(),
                "state": sa.case((waits.c.n > 0, BLOCKED), else_=PENDING),
                "waiting_on": waits.c.n,
            }
        )
        .returning(jobs.c.id, jobs.c.state, jobs.c.queue)
        .cte("retried")
    )
    woken = wake_queues(retried)
    return sa.select(sa.func.count(retried.c.id).label("n")).select_from(
        retried.join(woken, sa.true(), full=True)
    )


_RETRY = Statement(_retry_statement(), what="retrying the workflow")


def _pruned_parents_statement() -> sa.Executable:
    """How many edges of the workflow's failed and cancelled steps lead to a parent that
    retention pruned (the workflow had finished: its steps go by their own retention)."""
    child, parent = jobs.alias("child"), jobs.alias("parent")
    return (
        sa.select(sa.func.count().label("n"))
        .select_from(
            workflow_edges.join(child, child.c.id == workflow_edges.c.child_id).outerjoin(
                parent, parent.c.id == workflow_edges.c.parent_id
            )
        )
        .where(
            child.c.workflow_id == sa.bindparam("p_id"),
            child.c.state.in_([JobState.FAILED.value, JobState.CANCELLED.value]),
            parent.c.id.is_(None),
        )
    )


_PRUNED_PARENTS = Statement(_pruned_parents_statement(), what="retrying the workflow")


def _parent_results_statement() -> sa.Executable:
    """The parents' step names and results of the steps ``p_ids``. The parents are found
    by primary key (``id = ANY(ARRAY(...))``: index lookups, whatever the statistics say;
    a join could scan every job)."""
    ids = sa.bindparam("p_ids", type_=ARRAY(sa.BigInteger))
    parent_ids = sa.select(workflow_edges.c.parent_id).where(
        workflow_edges.c.child_id == sa.func.any(ids)
    )
    return (
        sa.select(workflow_edges.c.child_id, jobs.c.step, jobs.c.result)
        .select_from(jobs.join(workflow_edges, workflow_edges.c.parent_id == jobs.c.id))
        .where(
            jobs.c.id == sa.func.any(sa.func.array(parent_ids.scalar_subquery())),
            workflow_edges.c.child_id == sa.func.any(ids),
        )
    )


_PARENT_RESULTS = Statement(_parent_results_statement(), what="reading the parents' results")


def _state_of(rows: Sequence[Any], workflow_id: int) -> WorkflowState:
    if not rows:
        raise UnknownWorkflowError(
            f"no workflow has the id {workflow_id}: it was never pushed (or its push rolled "
            "back), or retention pruned it once it finished"
        )
    first = rows[0]
    steps = [QueuedJob.from_row(row) for row in rows if row["id"] is not None]
    return WorkflowState.of(
        workflow_id, first["workflow_name"], first["workflow_created_at"], steps
    )


class WorkflowRepository(Repository):
    """Workflows and their steps."""

    async def push(
        self, conn: HotExecutable, workflow: Workflow, *, announce: bool
    ) -> PushedWorkflow:
        """Store ``workflow``: its row, its steps, its edges, in one statement."""
        columns, parameters = _push_parameters_of(workflow)
        statement = _push_statement_for(columns, announce=announce)
        try:
            return _pushed(await statement.rows(conn, parameters, timeouts=self.timeouts))
        except DBAPIError as exc:
            # In the caller's transaction nothing more can be read: it is aborted.
            known = await _QUEUE_NAMES.rows(conn, {}) if _autocommits(conn) else []
            raise _refused(exc, workflow, [row["name"] for row in known]) from exc

    def push_sync(
        self, conn: SyncExecutable, workflow: Workflow, *, announce: bool
    ) -> PushedWorkflow:
        """:meth:`push` on a synchronous ``Connection`` or ``Session``."""
        columns, parameters = _push_parameters_of(workflow)
        statement = _push_statement_for(columns, announce=announce)
        try:
            return _pushed(statement.rows_sync(conn, parameters, timeouts=self.timeouts))
        except DBAPIError as exc:
            raise _refused(exc, workflow, []) from exc

    async def get(self, conn: HotExecutable, workflow_id: int) -> WorkflowState:
        """The workflow and its steps as stored now; raises
        :class:`~chancy.errors.UnknownWorkflowError` if no workflow has that id."""
        rows = await _GET.rows(conn, {"p_id": workflow_id}, timeouts=self.timeouts)
        return _state_of(rows, workflow_id)

    async def cancel(self, conn: HotExecutable, workflow_id: int) -> int:
        """Cancel the workflow's unfinished steps, in the caller's transaction; how many.
        Every step is locked first, in id order: a parent before its children, as an
        outcome's release locks them, so the two never deadlock."""
        parameters = {"p_id": workflow_id}
        await _LOCK_STEPS.rows(conn, parameters, timeouts=self.timeouts)
        (row,) = await _CANCEL.rows(conn, parameters, timeouts=self.timeouts)
        return int(row["n"])

    async def retry(self, conn: HotExecutable, workflow_id: int) -> int:
        """Put the workflow's failed and cancelled steps back (in the caller's
        transaction: it locks every step first); how many. Raises
        :class:`~chancy.errors.UnknownWorkflowError` when retention pruned a parent of a
        step to put back (its result is gone), and
        :class:`~chancy.errors.UniqueKeyHeldError` when an unfinished job took a step's
        unique key meanwhile; nothing changes then."""
        parameters = {"p_id": workflow_id}
        await _LOCK_STEPS.rows(conn, parameters, timeouts=self.timeouts)
        (pruned,) = await _PRUNED_PARENTS.rows(conn, parameters, timeouts=self.timeouts)
        if pruned["n"]:
            raise UnknownWorkflowError(
                f"workflow {workflow_id} cannot be retried: retention pruned {pruned['n']} "
                "parent step(s) of its failed or cancelled steps, and with them the results "
                "those steps would read; push the workflow again"
            )
        with key_taken_meanwhile():
            (row,) = await _RETRY.rows(conn, parameters, timeouts=self.timeouts)
        return int(row["n"])


async def with_parent_results(
    conn: HotExecutable, claimed: list[QueuedJob], *, timeouts: Timeouts | None = None
) -> list[QueuedJob]:
    """``claimed`` with each workflow step's ``parent_results`` (its parents' results by
    step name) read in; other jobs as they are, and no statement if none is a step."""
    steps = [job.id for job in claimed if job.workflow_id is not None]
    if not steps:
        return claimed
    rows = await _PARENT_RESULTS.rows(conn, {"p_ids": steps}, timeouts=timeouts)
    results: dict[int, dict[str, Any]] = {}
    for row in rows:
        results.setdefault(row["child_id"], {})[row["step"]] = row["result"]
    return [
        job._with_parent_results(results[job.id]) if job.id in results else job for job in claimed
    ]
