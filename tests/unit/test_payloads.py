"""Typed payloads without a database: what ``Job.from_func`` stores for a typed function,
what the worker gives it back, what is masked, and what stays as it was (no database)."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import typer
from pydantic import BaseModel, SecretStr, field_serializer

from chancy.allowed import AllowedFunctions
from chancy.cli import parse_aliases
from chancy.errors import (
    ConfigurationError,
    FunctionNotAllowedError,
    IncompatiblePayloadError,
    InvalidKwargsError,
)
from chancy.executor import Job, QueuedJob
from chancy.executor.base import RemoteJobError, call_arguments, resolve_allowed
from chancy.payloads import MASK, SECRETS_META_KEY, masked, payload_of
from chancy.states import JobState
from chancy.worker import outcomes
from tests.support import tasks, typed_tasks
from tests.support.typed_tasks import Credentials, Order, OrderV1

ROOT = Path(__file__).resolve().parents[2]
TASKS = "tests.support.typed_tasks"


def queued(job: Job, **values: Any) -> QueuedJob:
    fields = {name: getattr(job, name) for name in ("func", "kwargs", "meta", "max_attempts")}
    return QueuedJob(
        **fields, id=7, state=JobState.RUNNING, attempts=1, created_at=datetime.now(UTC), **values
    )


@pytest.mark.parametrize(
    "fn", [tasks.greet, tasks.anything, tasks.needs_job, typed_tasks.plain, tasks.record]
)
def test_functions_annotated_with_plain_json_types_have_no_payload(fn: Any) -> None:
    assert payload_of(fn) is None


def test_plain_kwargs_are_stored_and_passed_exactly_as_before() -> None:
    job = Job.from_func(typed_tasks.plain, kwargs={"name": "x", "count": 2, "extra": {"a": [1]}})
    assert dict(job.kwargs) == {"name": "x", "count": 2, "extra": {"a": [1]}}
    assert dict(job.meta) == {}
    assert call_arguments(typed_tasks.plain, queued(job)) == dict(job.kwargs)


def test_a_typed_function_s_payload_is_read_once() -> None:
    assert payload_of(typed_tasks.ship) is payload_of(typed_tasks.ship)


def test_the_worker_gives_the_function_its_types_back() -> None:
    job = Job.from_func(typed_tasks.ship, kwargs={"order": Order(number=3, express=True)})
    assert dict(job.kwargs) == {"order": {"number": 3, "express": True}}
    arguments = call_arguments(typed_tasks.ship, queued(job))
    assert arguments == {"order": Order(number=3, express=True)}


def test_a_job_asking_for_its_queued_job_gets_it_beside_its_typed_kwargs() -> None:
    kwargs = {
        "receipt": {
            "order_id": 1,
            "total": "2.5",
            "sent_at": "2024-01-01T00:00:00Z",
            "ref": "12345678-1234-5678-1234-567812345678",
            "lines": [],
        },
        "colour": "red",
        "where": {"x": 1, "y": 2},
        "mode": "mail",
    }
    job = queued(Job.from_func(typed_tasks.send_receipt, kwargs=kwargs))
    arguments = call_arguments(typed_tasks.send_receipt, job)
    assert arguments["job"] is job
    assert arguments["receipt"].total == Decimal("2.5")
    assert arguments["receipt"].sent_at == datetime(2024, 1, 1, tzinfo=UTC)


def test_stored_kwargs_that_no_longer_fit_raise_an_error_naming_the_field() -> None:
    job = queued(Job(func=f"{TASKS}.ship_strictly", kwargs={"order": {"number": 1}}))
    with pytest.raises(IncompatiblePayloadError) as caught:
        call_arguments(typed_tasks.ship_strictly, job)
    assert "order.warehouse: Field required" in str(caught.value)
    assert "predates the function's current signature" in str(caught.value)


@pytest.mark.parametrize(
    "exc",
    [
        IncompatiblePayloadError("order.warehouse: Field required"),
        RemoteJobError("IncompatiblePayloadError", "order.warehouse: Field required", ""),
    ],
    ids=["in the worker", "in a child process"],
)
def test_a_payload_that_no_longer_fits_fails_its_job_without_a_retry(exc: Exception) -> None:
    job = queued(Job(func=f"{TASKS}.ship_strictly", max_attempts=5))
    assert outcomes.failure(job, exc).state is JobState.FAILED


def test_a_value_that_does_not_fit_names_its_field_path() -> None:
    bad = {"number": 1, "express": "very"}
    with pytest.raises(
        InvalidKwargsError, match=r"order\.express: Input should be a valid boolean"
    ):
        Job.from_func(typed_tasks.ship, kwargs={"order": bad})


class Rounded(BaseModel):
    value: Decimal

    @field_serializer("value")
    def _as_text(self, value: Decimal) -> str:
        return f"about {value:.0f}"


def stores_rounded(amount: Rounded) -> None:
    """A type whose JSON form does not validate again."""


def test_a_value_whose_json_form_does_not_validate_again_is_refused_at_from_func() -> None:
    with pytest.raises(InvalidKwargsError, match="do not come back from their JSON form"):
        Job.from_func(stores_rounded, kwargs={"amount": Rounded(value=Decimal("2.4"))})


def test_secrets_are_stored_revealed_and_their_paths_recorded_in_meta() -> None:
    credentials = Credentials(user="ada", password=SecretStr("hunter2"))
    job = Job.from_func(
        typed_tasks.log_in, kwargs={"credentials": credentials, "token": "t0k3n"}, meta={"a": 1}
    )
    assert dict(job.kwargs) == {
        "credentials": {"user": "ada", "password": "hunter2"},
        "token": "t0k3n",
    }
    assert dict(job.meta) == {"a": 1, SECRETS_META_KEY: [["credentials", "password"], ["token"]]}
    assert "hunter2" not in repr(job)
    assert "t0k3n" not in repr(job)
    kept = job.with_meta({"b": 2})
    assert kept.meta[SECRETS_META_KEY] == job.meta[SECRETS_META_KEY]
    assert "hunter2" not in repr(kept)
    assert "hunter2" not in repr(pickle.loads(pickle.dumps(queued(job))))


def test_masking_passes_over_paths_that_do_not_fit() -> None:
    kwargs = {"a": [{"b": "secret"}, "x"], "c": "secret too"}
    paths = [["a", 0, "b"], ["c"], ["a", 5], ["a", "b"], ["nope", "x"], [], "a", [True]]
    assert masked(kwargs, {SECRETS_META_KEY: paths}) == {"a": [{"b": MASK}, "x"], "c": MASK}
    assert masked(kwargs, {SECRETS_META_KEY: "garbage"}) is kwargs
    assert masked(kwargs, []) is kwargs
    assert kwargs == {"a": [{"b": "secret"}, "x"], "c": "secret too"}


def test_without_pydantic_kwargs_stay_plain_and_a_typed_value_suggests_installing_it() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["pydantic"] = None  # as if it were not installed
        from datetime import datetime
        from chancy.errors import InvalidKwargsError
        from chancy.executor import Job

        def when(at: datetime, n: int = 1) -> None: ...

        when.__module__ = "job"
        sys.modules["job"] = sys.modules["__main__"]
        stored = Job.from_func(when, kwargs={"at": "2024-01-01", "n": 2})
        print(dict(stored.kwargs))
        try:
            Job.from_func(when, kwargs={"at": datetime(2024, 1, 1)})
        except InvalidKwargsError as exc:
            print(exc)
        """
    )
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment, check=True
    )
    stored, error = done.stdout.splitlines()
    assert stored == "{'at': '2024-01-01', 'n': 2}"
    assert error.startswith("kwargs['at'] cannot be stored as JSON")
    assert "pip install 'chancy[pydantic]'" in error
    assert "at: datetime" in error


def test_an_alias_runs_the_new_function_allowed_under_its_new_name() -> None:
    allowed = AllowedFunctions.of(
        [f"{TASKS}.renamed"], aliases={f"{TASKS}:old_name": f"{TASKS}.renamed"}
    )
    assert allowed.target(f"{TASKS}.old_name") == f"{TASKS}.renamed"
    assert resolve_allowed(f"{TASKS}.old_name", allowed) is typed_tasks.renamed
    assert resolve_allowed(f"{TASKS}.old_name", pickle.loads(pickle.dumps(allowed))) is (
        typed_tasks.renamed
    )
    refused = AllowedFunctions.of([f"{TASKS}.old_name"], aliases=dict(allowed.aliases))
    with pytest.raises(FunctionNotAllowedError, match="the alias of"):
        resolve_allowed(f"{TASKS}.old_name", refused)


@pytest.mark.parametrize(
    ("aliases", "problem"),
    [
        ({"a.b": "a.b"}, "points at itself"),
        ({"a.b": "c.d", "c.d": "e.f"}, "not followed from one to the next"),
        ({"a": "c.d"}, "not a function's dotted name"),
        ({"a.b": 3}, "not a function's dotted name"),
        (["a.b"], "takes a mapping"),
    ],
)
def test_aliases_that_cannot_work_are_refused_saying_why(aliases: Any, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        AllowedFunctions.of(None, aliases=aliases)


def test_cli_aliases_are_old_equals_new() -> None:
    assert parse_aliases(["a.b=c.d", " e.f = g:h "]) == {"a.b": "c.d", "e.f": "g:h"}
    with pytest.raises(typer.BadParameter, match="is not OLD=NEW"):
        parse_aliases(["a.b"])
    with pytest.raises(typer.BadParameter, match="points at itself"):
        parse_aliases(["a.b=a:b"])


def test_a_job_pushed_with_an_older_model_validates_into_the_newer_one() -> None:
    old = Job.from_func(typed_tasks.ship_v1, kwargs={"order": OrderV1(number=5)})
    arguments = call_arguments(typed_tasks.ship, queued(old))
    assert arguments == {"order": Order(number=5, express=False)}
    assert json.loads(json.dumps(dict(old.kwargs))) == {"order": {"number": 5}}
