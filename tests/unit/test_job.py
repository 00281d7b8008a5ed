"""Job: a frozen value, validated at Job.from_func."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from chancy.errors import (
    InvalidFunctionError,
    InvalidJobError,
    InvalidKwargsError,
    InvalidQueueError,
)
from chancy.executor import Job
from chancy.jobs import json_text
from tests.support import tasks


def make() -> Job:
    return Job.from_func(tasks.greet, kwargs={"name": "world"})


def test_from_func_stores_the_importable_name() -> None:
    assert make().func == "tests.support.tasks.greet"


def test_static_method_is_accepted_by_its_qualified_name() -> None:
    job = Job.from_func(tasks.Tasks.static, kwargs={"name": "x"})
    assert job.func == "tests.support.tasks.Tasks.static"


def test_defaults() -> None:
    job = make()
    assert (job.queue, job.priority, job.max_attempts) == ("default", 0, 1)
    assert (job.scheduled_at, job.delay, job.unique_key, job.timeout, job.backoff) == (None,) * 5
    assert dict(job.meta) == {}


def test_job_is_frozen_and_slotted() -> None:
    job = make()
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.priority = 3  # type: ignore[misc]
    assert not hasattr(job, "__dict__")


def test_kwargs_cannot_be_changed_through_the_job() -> None:
    source = {"name": "world"}
    job = Job.from_func(tasks.greet, kwargs=source)
    source["name"] = "changed"
    assert job.kwargs["name"] == "world"
    with pytest.raises(TypeError):
        job.kwargs["name"] = "x"  # type: ignore[index]


def test_positional_and_unknown_arguments_are_rejected() -> None:
    with pytest.raises(TypeError):
        Job("x.y")  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("method", "value", "field"),
    [
        ("with_priority", 10, "priority"),
        ("with_max_attempts", 3, "max_attempts"),
        ("with_unique_key", "k", "unique_key"),
        ("with_timeout", 2.5, "timeout"),
        ("with_queue", "emails", "queue"),
        ("with_scheduled_at", datetime(2030, 1, 1, tzinfo=UTC), "scheduled_at"),
        ("with_delay", 5.0, "delay"),
        ("with_backoff", 2.0, "backoff"),
    ],
)
def test_with_methods_return_a_new_job(method: str, value: object, field: str) -> None:
    job = make()
    changed = getattr(job, method)(value)
    assert changed is not job
    assert getattr(changed, field) == value
    assert getattr(job, field) != value


def test_with_kwargs_and_with_meta_replace() -> None:
    job = make().with_kwargs({"name": "other"}).with_meta({"tenant": 4})
    assert dict(job.kwargs) == {"name": "other"}
    assert dict(job.meta) == {"tenant": 4}


def test_with_timeout_takes_a_timedelta() -> None:
    assert make().with_timeout(timedelta(minutes=1)).timeout == 60.0


def test_delay_and_scheduled_at_replace_each_other() -> None:
    at = datetime(2030, 1, 1, tzinfo=UTC)
    assert make().with_delay(5).with_scheduled_at(at).delay is None
    assert make().with_scheduled_at(at).with_delay(5).scheduled_at is None


def test_unchanged_copy_is_equal_and_hashes_equal() -> None:
    job = make()
    assert job == job.with_priority(0)
    assert hash(job) == hash(job.with_priority(0))
    assert job != job.with_priority(1)
    assert len({job, job.with_priority(0), job.with_priority(1)}) == 2


def test_equal_kwargs_in_another_order_hash_equal() -> None:
    a = Job.from_func(tasks.anything, kwargs={"a": 1, "b": [1, 2]})
    b = Job.from_func(tasks.anything, kwargs={"b": [1, 2], "a": 1})
    assert a == b
    assert hash(a) == hash(b)


def test_kwargs_are_stored_as_json_would_return_them() -> None:
    job = Job.from_func(tasks.anything, kwargs={"t": (1, 2), "d": {"k": None}})
    assert dict(job.kwargs) == {"t": [1, 2], "d": {"k": None}}


def closure_factory() -> object:
    def inner() -> None:
        pass

    return inner


@pytest.mark.parametrize(
    ("fn", "words"),
    [
        (lambda: None, "lambda"),
        (closure_factory(), "closure"),
        (tasks.Tasks().method, "bound method"),
        (functools.partial(tasks.greet, name="x"), "partial"),
        (tasks.Tasks, "not a function"),
        (functools.wraps(tasks.greet)(lambda **kw: None), "does not name"),
    ],
    ids=["lambda", "closure", "bound-method", "partial", "class", "decorated-copy"],
)
def test_functions_a_worker_cannot_import_are_rejected(fn: object, words: str) -> None:
    with pytest.raises(InvalidFunctionError, match=words):
        Job.from_func(fn)  # type: ignore[arg-type]


def test_kwargs_that_are_not_json_name_the_key() -> None:
    with pytest.raises(InvalidKwargsError, match=r"kwargs\['when'\]"):
        Job.from_func(tasks.anything, kwargs={"when": datetime.now(UTC)})


def test_nan_is_not_json() -> None:
    with pytest.raises(InvalidKwargsError, match="ratio"):
        Job.from_func(tasks.anything, kwargs={"ratio": math.nan})


def test_kwargs_nested_deeper_than_json_can_encode_name_the_key() -> None:
    deep: object = 0
    for _ in range(5_000):
        deep = [deep]
    with pytest.raises(InvalidKwargsError, match=r"kwargs\['tree'\] cannot be stored as JSON"):
        Job.from_func(tasks.anything, kwargs={"tree": deep})


def test_non_string_keys_are_rejected() -> None:
    with pytest.raises(InvalidKwargsError, match="JSON keys must be str"):
        Job.from_func(tasks.anything, kwargs={1: "x"})  # type: ignore[dict-item]


def test_nul_characters_are_rejected() -> None:
    with pytest.raises(InvalidKwargsError, match="NUL"):
        Job.from_func(tasks.anything, kwargs={"text": "a\x00b"})


def test_unknown_keyword_is_rejected_with_a_suggestion() -> None:
    with pytest.raises(InvalidKwargsError, match="did you mean 'name'"):
        Job.from_func(tasks.greet, kwargs={"nmae": "x"})


def test_missing_required_argument_is_rejected() -> None:
    with pytest.raises(InvalidKwargsError, match="needs the argument 'name'"):
        Job.from_func(tasks.greet)


def test_positional_only_parameter_cannot_be_passed() -> None:
    with pytest.raises(InvalidKwargsError, match="positionally"):
        Job.from_func(tasks.positional_only, kwargs={"name": "x"})


def test_queued_job_parameter_is_not_required_in_kwargs() -> None:
    job = Job.from_func(tasks.needs_job, kwargs={"name": "x"})
    assert job.func.endswith("needs_job")
    with pytest.raises(InvalidKwargsError, match="receives the running QueuedJob"):
        Job.from_func(tasks.needs_job, kwargs={"name": "x", "job": 1})


@pytest.mark.parametrize("priority", ["1", 1.5, True, None, 2**31])
def test_priority_must_be_a_32_bit_int(priority: object) -> None:
    with pytest.raises(InvalidJobError, match="priority"):
        make().with_priority(priority)  # type: ignore[arg-type]


@pytest.mark.parametrize("max_attempts", [0, -1, "3"])
def test_max_attempts_must_be_at_least_one(max_attempts: object) -> None:
    with pytest.raises(InvalidJobError, match="max_attempts"):
        make().with_max_attempts(max_attempts)  # type: ignore[arg-type]


def test_naive_scheduled_at_is_rejected() -> None:
    with pytest.raises(InvalidJobError, match="no time zone"):
        make().with_scheduled_at(datetime(2030, 1, 1))


def test_aware_scheduled_at_in_any_zone_is_kept() -> None:
    at = datetime(2030, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    assert make().with_scheduled_at(at).scheduled_at == at


@pytest.mark.parametrize("timeout", [0, -1, math.inf, "5"])
def test_timeout_must_be_positive_seconds(timeout: object) -> None:
    with pytest.raises(InvalidJobError, match="timeout"):
        make().with_timeout(timeout)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", "a b", "x" * 65, "semi;colon", "é"])
def test_bad_queue_names_are_rejected(name: str) -> None:
    with pytest.raises(InvalidQueueError):
        make().with_queue(name)


def test_unique_key_must_be_a_non_empty_string() -> None:
    with pytest.raises(InvalidJobError, match="unique_key"):
        make().with_unique_key("")


def test_jobs_pickle_for_the_process_executor() -> None:
    import pickle

    job = make().with_meta({"a": [1]}).with_priority(4)
    assert pickle.loads(pickle.dumps(job)) == job


def test_moving_a_job_to_a_validated_queue_equals_with_queue() -> None:
    job = make().with_priority(3).with_meta({"a": 1}).with_concurrency_key("k", limit=2)
    moved = job._moved_to("elsewhere")
    assert moved == job.with_queue("elsewhere")
    assert moved.queue == "elsewhere"
    assert job.queue == "default"  # the original is untouched
    assert job._moved_to("default") is job


def test_json_text_writes_big_floats_so_that_postgresql_keeps_them_floats() -> None:
    text = json_text({"x": 1e16, "nested": [2.5e20, {"s": "e+ in a string"}], "n": 10**20})
    assert text == (
        '{"x": 10000000000000000.0, "nested": [250000000000000000000.0, '
        '{"s": "e+ in a string"}], "n": 100000000000000000000}'
    )
    assert json.loads(text)["x"] == 1e16
    assert isinstance(json.loads(text)["x"], float)


@pytest.mark.parametrize(
    "key",
    ["tenant\x00one", "tenant\ud800"],
    ids=["nul", "surrogate"],
)
def test_a_concurrency_key_postgresql_cannot_store_is_refused(key: str) -> None:
    with pytest.raises(InvalidJobError, match="concurrency key"):
        make().with_concurrency_key(key)


@pytest.mark.parametrize(
    "key",
    ["customer\x00seven", "customer\udfff"],
    ids=["nul", "surrogate"],
)
def test_a_rate_key_postgresql_cannot_store_is_refused(key: str) -> None:
    with pytest.raises(InvalidJobError, match="rate key"):
        make().with_rate_key(key, limit=1)


@pytest.mark.parametrize("period", [1e12, timedelta(days=999_999_999)])
def test_a_rate_period_no_claim_could_compute_is_refused(period: float | timedelta) -> None:
    with pytest.raises(InvalidJobError, match=r"rate period .* at most"):
        make().with_rate_key("customer-7", limit=1, period=period)


def test_a_rate_period_of_a_year_is_accepted() -> None:
    job = make().with_rate_key("customer-7", limit=1, period=timedelta(days=365))
    assert job.rate_period == 365 * 86400.0


@pytest.mark.parametrize(
    "moment",
    [
        datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5))),
        datetime(1, 1, 1, 1, tzinfo=timezone(timedelta(hours=5))),
    ],
    ids=["after-9999-in-utc", "before-year-1-in-utc"],
)
def test_a_scheduled_at_outside_what_utc_can_hold_is_refused(moment: datetime) -> None:
    with pytest.raises(InvalidJobError, match=r"scheduled_at .* UTC"):
        make().with_scheduled_at(moment)


@pytest.mark.parametrize(
    "kwargs",
    [{1: "x"}, {"name": {1: "x"}}, {"name": [{2: "x"}]}],
    ids=["top level", "nested", "in a list"],
)
def test_a_kwargs_key_that_is_not_a_str_is_refused_at_any_depth(kwargs: dict[Any, Any]) -> None:
    with pytest.raises(InvalidKwargsError, match="JSON keys must be str"):
        Job.from_func(tasks.greet, kwargs=kwargs)


def test_kwargs_that_are_not_a_mapping_are_refused_before_the_signature() -> None:
    with pytest.raises(InvalidKwargsError, match="must be a mapping"):
        Job.from_func(tasks.greet, kwargs=[("name", "x")])  # type: ignore[arg-type]
