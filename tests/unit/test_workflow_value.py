"""A Workflow is a frozen value checked as it is built: names, parents, cycles, size."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from chancy.errors import InvalidWorkflowError
from chancy.executor import Job, QueuedJob
from chancy.states import JobState
from chancy.workflow import MAX_STEPS, Workflow, WorkflowState, WorkflowStatus
from tests.support import workflow_tasks

JOB = Job.from_func(workflow_tasks.number, kwargs={"n": 1})
NOW = datetime(2030, 1, 1, tzinfo=UTC)


def test_each_step_returns_a_new_workflow() -> None:
    empty = Workflow("w")
    one = empty.step("a", JOB)
    two = one.step("b", JOB, after=["a"], always=True)
    assert (len(empty.steps), len(one.steps), len(two.steps)) == (0, 1, 2)
    assert two.steps[1].after == ("a",)
    assert two.steps[1].always
    with pytest.raises(dataclasses.FrozenInstanceError):
        two.name = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda w: w.step("a", JOB).step("a", JOB), "already has a step 'a'"),
        (lambda w: w.step("b", JOB, after=["a"]), "waits for 'a', which is not in workflow"),
        (lambda w: w.step("a", JOB, after=["a"]), r"cycle: a -> a"),
        (lambda w: w.step("a", JOB).step("b", JOB, after="a"), "takes a list of step names"),
        (lambda w: w.step("a", JOB).step("b", JOB, after=["a", "a"]), "more than once"),
        (lambda w: w.step("a", JOB).step("b", JOB, after=[1]), "names steps by their names"),
        (lambda w: w.step("a", "not a job"), "needs a Job, got str"),
        (lambda w: w.step("a", JOB, always=1), "must be True or False"),
        (lambda w: w.step("", JOB), "is not allowed"),
        (lambda w: w.step("a b", JOB), "is not allowed"),
        (lambda w: w.step("a\x00", JOB), "is not allowed"),
        (lambda w: w.step("x" * 65, JOB), "is not allowed"),
        (lambda w: w.step(None, JOB), "must be a str"),
    ],
)
def test_a_workflow_that_could_never_run_is_refused_when_built(build, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidWorkflowError, match=message):
        build(Workflow("w"))


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        ("x" * 201, "at most 200"),
        ("a\x00b", "printable"),
        ("a\nb", "printable"),
        ("a\ud800b", "surrogate"),
        (42, "must be a str"),
    ],
)
def test_a_workflows_name_is_checked(name: object, message: str) -> None:
    with pytest.raises(InvalidWorkflowError, match=message):
        Workflow(name)  # type: ignore[arg-type]


def test_a_workflow_holds_at_most_max_steps() -> None:
    workflow = Workflow("big")
    for index in range(MAX_STEPS):
        workflow = workflow.step(f"s{index}", JOB)
    with pytest.raises(InvalidWorkflowError, match="more than 2,000 steps"):
        workflow.step("one-more", JOB)


def queued(index: int, state: JobState) -> QueuedJob:
    return QueuedJob(
        func=JOB.func, id=index, state=state, created_at=NOW, step=f"s{index}", workflow_id=1
    )


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ([JobState.SUCCEEDED, JobState.BLOCKED], WorkflowStatus.RUNNING),
        ([JobState.FAILED, JobState.RUNNING], WorkflowStatus.RUNNING),
        ([JobState.SUCCEEDED, JobState.SUCCEEDED], WorkflowStatus.SUCCEEDED),
        ([JobState.FAILED, JobState.CANCELLED, JobState.SUCCEEDED], WorkflowStatus.FAILED),
        ([JobState.CANCELLED, JobState.SUCCEEDED], WorkflowStatus.CANCELLED),
    ],
)
def test_the_state_of_a_workflow_is_its_steps(
    states: list[JobState], expected: WorkflowStatus
) -> None:
    state = WorkflowState.of(1, "w", NOW, [queued(i, s) for i, s in enumerate(states)])
    assert state.state is expected
    assert state.finished is (expected is not WorkflowStatus.RUNNING)
    assert list(state.steps) == [f"s{i}" for i in range(len(states))]
