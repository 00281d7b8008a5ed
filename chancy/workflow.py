"""Workflows: jobs that wait for other jobs.

A :class:`Workflow` is a frozen value, like a :class:`~chancy.jobs.Job`: each
:meth:`~Workflow.step` returns a new one. A step is a job with a name and the names of the
steps it waits for (``after``)::

    wf = (
        Workflow("import-42")
        .step("fetch", Job.from_func(fetch, kwargs={"url": url}))
        .step("parse", Job.from_func(parse), after=["fetch"])
        .step("thumbs", Job.from_func(thumbs), after=["fetch"])
        .step("publish", Job.from_func(publish), after=["parse", "thumbs"])
        .step("cleanup", Job.from_func(cleanup), after=["publish"], always=True)
    )
    ref = await chancy.push_workflow(wf)

``after`` may only name steps already in the workflow, so the steps are always in an
order that runs (a workflow cannot have a cycle; a step naming itself is refused). A step
runs once every parent ``succeeded``; an ``always`` step once every parent *finished*,
whatever the outcome (cleanup). A step that fails (no attempts left) or is cancelled
cancels its descendants, but ``always`` steps; the other branches run on.

How the database does it: :mod:`chancy.schema_functions`. Reading, waiting for,
cancelling and retrying a workflow: :class:`~chancy.app.Chancy`'s ``*_workflow`` methods.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from types import MappingProxyType

from chancy.errors import InvalidWorkflowError
from chancy.jobs import Job, QueuedJob
from chancy.states import FINISHED_STATES, JobState

__all__ = [
    "MAX_STEPS",
    "STEP_NAME_MAX_LENGTH",
    "WORKFLOW_NAME_MAX_LENGTH",
    "Step",
    "Workflow",
    "WorkflowReference",
    "WorkflowState",
    "WorkflowStatus",
]

MAX_STEPS = 2_000
"""The most steps one workflow holds (it is written by one statement)."""
STEP_NAME_MAX_LENGTH = 64
WORKFLOW_NAME_MAX_LENGTH = 200
_STEP_NAME = re.compile(r"[A-Za-z0-9_.:\-]+")


def _check_workflow_name(name: object) -> str:
    if not isinstance(name, str):
        raise InvalidWorkflowError(f"a workflow's name must be a str, not {type(name).__name__}")
    if not name.strip():
        raise InvalidWorkflowError("a workflow's name is empty; give one such as 'import-42'")
    if len(name) > WORKFLOW_NAME_MAX_LENGTH:
        raise InvalidWorkflowError(
            f"a workflow's name is {len(name)} characters long; use at most "
            f"{WORKFLOW_NAME_MAX_LENGTH}"
        )
    try:
        name.encode()
    except UnicodeEncodeError:
        raise InvalidWorkflowError(
            f"a workflow's name must be valid text (it holds a lone surrogate): {name!r}"
        ) from None
    if not name.isprintable():
        raise InvalidWorkflowError(
            f"a workflow's name must be printable text (no control characters): {name!r}"
        )
    return name


def _check_step_name(name: object) -> str:
    if not isinstance(name, str):
        raise InvalidWorkflowError(f"a step's name must be a str, not {type(name).__name__}")
    if not 1 <= len(name) <= STEP_NAME_MAX_LENGTH or not _STEP_NAME.fullmatch(name):
        shown = name if len(name) <= STEP_NAME_MAX_LENGTH else name[:20] + "..."
        raise InvalidWorkflowError(
            f"step name {shown!r} is not allowed: use 1 to {STEP_NAME_MAX_LENGTH} characters "
            "from A-Z, a-z, 0-9 and _ . : -"
        )
    return name


@dataclasses.dataclass(frozen=True, slots=True)
class Step:
    """One step of a :class:`Workflow`: its ``name``, its ``job``, the names of the steps
    it waits for (``after``), and whether it runs whatever their outcome (``always``)."""

    name: str
    job: Job
    after: tuple[str, ...] = ()
    always: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Workflow:
    """A named set of steps that wait for one another; frozen: :meth:`step` returns a new
    workflow. Push it with :meth:`Chancy.push_workflow <chancy.app.Chancy.push_workflow>`."""

    name: str
    steps: tuple[Step, ...] = ()

    def __post_init__(self) -> None:
        _check_workflow_name(self.name)
        if not isinstance(self.steps, tuple):
            raise InvalidWorkflowError("steps are added with .step(name, job, after=[...])")

    def step(
        self,
        name: str,
        job: Job,
        *,
        after: Iterable[str] = (),
        always: bool = False,
    ) -> Workflow:
        """A copy with the step ``name`` running ``job`` once the steps named in ``after``
        succeeded (or, with ``always``, once they finished, whatever their outcome).

        ``after`` names steps already in the workflow (add the parents first), so a
        workflow never holds a cycle. Raises :class:`~chancy.errors.InvalidWorkflowError`
        for a name used twice, an unknown or repeated parent, a step naming itself, or
        more than :data:`MAX_STEPS` steps."""
        _check_step_name(name)
        known = {step.name for step in self.steps}
        if name in known:
            raise InvalidWorkflowError(
                f"workflow {self.name!r} already has a step {name!r}; give each step its own name"
            )
        if not isinstance(job, Job):
            raise InvalidWorkflowError(
                f"step {name!r} needs a Job, got {type(job).__name__}; wrap functions with "
                "Job.from_func(fn)"
            )
        if isinstance(job, QueuedJob):
            job = job.job
        if isinstance(after, str):
            raise InvalidWorkflowError(
                f"after= of step {name!r} takes a list of step names: after=[{after!r}]"
            )
        if not isinstance(always, bool):
            raise InvalidWorkflowError(
                f"always= of step {name!r} must be True or False, not {always!r}"
            )
        parents = tuple(after)
        for parent in parents:
            if not isinstance(parent, str):
                raise InvalidWorkflowError(
                    f"after= of step {name!r} names steps by their names (str), "
                    f"not {type(parent).__name__}"
                )
            if parent == name:
                raise InvalidWorkflowError(
                    f"step {name!r} waits for itself (cycle: {name} -> {name}); a step can "
                    "only wait for other steps"
                )
            if parent not in known:
                raise InvalidWorkflowError(
                    f"step {name!r} waits for {parent!r}, which is not in workflow "
                    f"{self.name!r}: add {parent!r} first (a step can only wait for steps "
                    "added before it, so a workflow never has a cycle)"
                )
        if len(set(parents)) != len(parents):
            repeated = sorted({p for p in parents if parents.count(p) > 1})
            raise InvalidWorkflowError(f"after= of step {name!r} names {repeated} more than once")
        if len(self.steps) >= MAX_STEPS:
            raise InvalidWorkflowError(
                f"workflow {self.name!r} would have more than {MAX_STEPS:,} steps; split it in "
                "several workflows"
            )
        return dataclasses.replace(self, steps=(*self.steps, Step(name, job, parents, always)))


@dataclasses.dataclass(frozen=True, slots=True)
class WorkflowReference:
    """What :meth:`Chancy.push_workflow <chancy.app.Chancy.push_workflow>` returns: the
    workflow's id, and the id of each step's job by step name."""

    id: int
    steps: Mapping[str, int] = dataclasses.field(default_factory=dict, compare=False)

    def __int__(self) -> int:
        return self.id


class WorkflowStatus(enum.StrEnum):
    """Where a workflow is: ``running`` until every step finished; then ``succeeded``
    (every step did), ``failed`` (a step failed) or ``cancelled`` (a step was cancelled,
    none failed)."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclasses.dataclass(frozen=True, slots=True)
class WorkflowState:
    """A workflow as stored now: its ``state`` and each step's job by step name."""

    id: int
    name: str
    created_at: datetime
    state: WorkflowStatus
    steps: Mapping[str, QueuedJob]

    @property
    def finished(self) -> bool:
        """Whether every step finished."""
        return self.state is not WorkflowStatus.RUNNING

    @classmethod
    def of(
        cls, id: int, name: str, created_at: datetime, steps: Iterable[QueuedJob]
    ) -> WorkflowState:
        """The state of a workflow with these steps."""
        by_name = {job.step or str(job.id): job for job in steps}
        states = {job.state for job in by_name.values()}
        if not states <= FINISHED_STATES:
            state = WorkflowStatus.RUNNING
        elif JobState.FAILED in states:
            state = WorkflowStatus.FAILED
        elif JobState.CANCELLED in states:
            state = WorkflowStatus.CANCELLED
        else:
            state = WorkflowStatus.SUCCEEDED
        return cls(id, name, created_at, state, MappingProxyType(by_name))
