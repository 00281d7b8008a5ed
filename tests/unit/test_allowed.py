"""The allowed= patterns, and the checks of a stored job before it runs (no database)."""

from __future__ import annotations

import os
import pickle
from datetime import UTC, datetime
from typing import Any

import pytest

from chancy.allowed import UNRESTRICTED, AllowedFunctions, check_runnable
from chancy.errors import ConfigurationError, CorruptJobError, FunctionNotAllowedError
from chancy.executor import QueuedJob
from chancy.executor.base import resolve_allowed
from chancy.models import JobRow
from chancy.states import JobState
from chancy.worker.outcomes import failure
from tests.support import allowed_tasks, tasks

ALLOWED = AllowedFunctions.of(["myapp.tasks.*", "myapp.billing:charge"])


def stored(**values: Any) -> QueuedJob:
    """A job row as the database returns it, with ``values`` in place of the defaults."""
    row: dict[str, Any] = {column.name: None for column in JobRow.__table__.columns}
    row.update(
        id=7,
        func="myapp.tasks.send",
        kwargs={},
        queue="default",
        priority=0,
        max_attempts=3,
        state="running",
        attempts=1,
        created_at=datetime.now(UTC),
        meta={},
        errors=[],
    )
    return QueuedJob.from_row({**row, **values})


@pytest.mark.parametrize(
    "name", ["myapp.tasks.send", "myapp.tasks.mail.send", "myapp.billing.charge"]
)
def test_names_matching_a_pattern_are_allowed(name: str) -> None:
    assert ALLOWED.allows(name)


@pytest.mark.parametrize(
    "name",
    ["os.system", "myapp.tasks", "myapp.tasksx.send", "myapp.billing.charge_all", "MYAPP.tasks.x"],
)
def test_names_matching_no_pattern_are_refused(name: str) -> None:
    assert not ALLOWED.allows(name)


def test_colon_and_dot_spellings_are_the_same_pattern() -> None:
    assert AllowedFunctions.of(["a.b:c"]) == AllowedFunctions.of(["a.b.c"])


def test_no_patterns_allow_anything() -> None:
    assert AllowedFunctions.of(None) is UNRESTRICTED
    assert AllowedFunctions.of([]).unrestricted
    assert UNRESTRICTED.allows("os.system")


def test_a_single_string_is_refused_rather_than_read_as_characters() -> None:
    with pytest.raises(ConfigurationError, match=r"allowed=\['myapp.\*'\]"):
        AllowedFunctions.of("myapp.*")


@pytest.mark.parametrize("pattern", ["", "  ", "myapp tasks", "myapp/tasks", 3])
def test_patterns_no_function_name_could_match_are_refused(pattern: object) -> None:
    with pytest.raises(ConfigurationError, match="allowed= pattern"):
        AllowedFunctions.of([pattern])  # type: ignore[list-item]


def test_the_refusal_names_the_function_and_the_setting() -> None:
    with pytest.raises(FunctionNotAllowedError) as caught:
        ALLOWED.check("os.system")
    message = str(caught.value)
    assert "'os.system'" in message
    assert "allowed=['myapp.tasks.*', 'myapp.billing.charge']" in message
    assert "not imported" in message


def test_allowed_functions_pickle_for_child_processes() -> None:
    copy = pickle.loads(pickle.dumps(ALLOWED))
    assert copy == ALLOWED
    assert copy.allows("myapp.tasks.x")
    assert not copy.allows("os.system")


def test_resolving_checks_where_the_function_is_defined() -> None:
    allowed = AllowedFunctions.of(["tests.support.allowed_tasks.*"])
    assert resolve_allowed("tests.support.allowed_tasks.hello", allowed) is allowed_tasks.hello
    with pytest.raises(FunctionNotAllowedError, match="defined elsewhere"):
        resolve_allowed("tests.support.allowed_tasks.os.getcwd", allowed)


def test_an_unrestricted_worker_resolves_any_importable_name() -> None:
    assert resolve_allowed("os.getcwd", UNRESTRICTED) is os.getcwd
    assert resolve_allowed("tests.support.tasks.greet", UNRESTRICTED) is tasks.greet


def test_a_well_formed_allowed_job_passes_the_checks() -> None:
    check_runnable(stored(kwargs={"to": "a@b.c"}, timeout=1.5), ALLOWED)


@pytest.mark.parametrize("func", ["send", "myapp..send", "myapp.tasks.send()", "9x.y", None])
def test_a_func_that_is_not_a_dotted_name_is_corrupt(func: object) -> None:
    with pytest.raises(CorruptJobError, match=r"job 7: its func .* is not a dotted name"):
        check_runnable(stored(func=func), UNRESTRICTED)


def test_a_very_long_func_is_shortened_in_the_message() -> None:
    with pytest.raises(CorruptJobError) as caught:
        check_runnable(stored(func="x " * 10_000), UNRESTRICTED)
    assert len(str(caught.value)) < 400


@pytest.mark.parametrize("kwargs", [[1], "text", 5, True, None])
def test_kwargs_that_are_not_an_object_are_corrupt(kwargs: object) -> None:
    with pytest.raises(CorruptJobError, match="not an object"):
        check_runnable(stored(kwargs=kwargs), UNRESTRICTED)


@pytest.mark.parametrize("meta", [[1], "text", None])
def test_meta_that_is_not_an_object_is_corrupt(meta: object) -> None:
    with pytest.raises(CorruptJobError, match="its meta is a JSON"):
        check_runnable(stored(meta=meta), UNRESTRICTED)


@pytest.mark.parametrize("timeout", [0.0, -1.0, float("nan"), float("inf")])
def test_a_timeout_that_is_not_a_positive_number_is_corrupt(timeout: float) -> None:
    with pytest.raises(CorruptJobError, match="timeout"):
        check_runnable(stored(timeout=timeout), UNRESTRICTED)


def test_mapping_a_row_with_bad_json_values_does_not_fail() -> None:
    job = stored(kwargs=[1, 2], meta="text", errors={"not": "a list"})
    # The row breaks QueuedJob's declared types on purpose: they are what is compared.
    assert (job.kwargs, job.meta, job.errors) == ([1, 2], "text", ({"not": "a list"},))  # type: ignore[comparison-overlap]


def test_mapping_a_row_in_an_unknown_state_names_the_job_and_the_state() -> None:
    with pytest.raises(CorruptJobError, match="job 7 has the state 'exploded'"):
        stored(state="exploded")


def test_a_refused_job_fails_at_once_with_attempts_left() -> None:
    job = stored(attempts=1, max_attempts=5)
    refused = failure(job, FunctionNotAllowedError("no"))
    corrupt = failure(job, CorruptJobError("bad row"))
    ordinary = failure(job, ValueError("boom"))
    assert (refused.state, corrupt.state, ordinary.state) == (
        JobState.FAILED,
        JobState.FAILED,
        JobState.RETRYING,
    )
