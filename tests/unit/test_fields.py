"""A job's fields are declared once (the :class:`Job` and :class:`QueuedJob` dataclasses)
and derived everywhere else; the jobs table must agree with them."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from chancy.jobs import JOB_FIELDS, STORED_FIELDS, Job, QueuedJob
from chancy.models import TABLE_PREFIX, JobRow, metadata
from chancy.repository.push import CHUNK_BYTES, CHUNK_SIZE, _push_parameters, _PushPlan
from chancy.states import JobState
from tests.support import tasks


def test_every_stored_field_is_a_column_of_the_jobs_table() -> None:
    assert {column.name for column in JobRow.__table__.columns} == set(STORED_FIELDS)


def test_a_push_sends_every_field_a_job_of_the_batch_sets() -> None:
    plain = Job(func="tests.support.tasks.greet", kwargs={"name": "x"})
    every = Job(
        func="tests.support.tasks.greet",
        kwargs={"name": "y"},
        queue="q",
        priority=1,
        max_attempts=2,
        scheduled_at=datetime(2030, 1, 2, tzinfo=UTC),
        delay=3.0,
        unique_key="u",
        timeout=4.0,
        meta={"m": 1},
        backoff=5.0,
        concurrency_key="c",
        concurrency_limit=6,
        rate_key="r",
        rate_limit=7,
        rate_period=8.0,
        max_snoozes=9,
    )
    columns, parameters = _push_parameters([plain, every], {})
    assert columns == set(JOB_FIELDS)
    assert set(parameters) == {f"p_{name}" for name in JOB_FIELDS}


def test_a_push_leaves_the_fields_no_job_sets_to_the_servers_defaults() -> None:
    job = Job(func="tests.support.tasks.greet", kwargs={"name": "x"})
    columns, parameters = _push_parameters([job, job.with_priority(0)], {})
    assert columns == {"func", "queue", "kwargs"}
    assert set(parameters) == {"p_func", "p_queue", "p_kwargs"}


def test_a_row_maps_to_a_queued_job_field_by_field() -> None:
    moment = datetime(2030, 1, 2, tzinfo=UTC)
    row = {
        "id": 7,
        "func": "a.b",
        "kwargs": {"k": 1},
        "queue": "q",
        "priority": 3,
        "max_attempts": 4,
        "scheduled_at": moment,
        "unique_key": "u",
        "timeout": 5.0,
        "meta": {"m": True},
        "backoff": 6.0,
        "concurrency_key": "c",
        "concurrency_limit": 8,
        "rate_key": "r",
        "rate_limit": 9,
        "rate_period": 10.0,
        "state": "running",
        "attempts": 2,
        "fence": 1234567890123,
        "created_at": moment - timedelta(days=1),
        "started_at": moment + timedelta(seconds=1),
        "completed_at": moment + timedelta(seconds=2),
        "lease_expires_at": moment + timedelta(seconds=3),
        "worker_id": "w",
        "errors": [{"type": "E"}],
        "result": [1, 2],
        "snoozes": 3,
        "max_snoozes": 11,
        "progress": 0.5,
        "progress_message": "half",
        "progress_at": moment + timedelta(seconds=4),
        "workflow_id": 11,
        "step": "parse",
        "always": False,
        "waiting_on": 0,
    }
    job = QueuedJob.from_row(row)
    mapped = {field.name: getattr(job, field.name) for field in dataclasses.fields(job)}
    expected = {
        **row,
        "delay": None,
        "state": JobState.RUNNING,
        "errors": ({"type": "E"},),
        "parent_results": {},
    }
    assert {name: dict(v) if name in ("kwargs", "meta") else v for name, v in mapped.items()} == (
        expected
    )


def test_every_table_of_chancys_is_named_with_its_prefix() -> None:
    assert metadata.tables
    assert all(name.startswith(TABLE_PREFIX) for name in metadata.tables)


def test_a_batch_is_split_by_jobs_and_by_bytes_of_json() -> None:
    small = Job.from_func(tasks.greet, kwargs={"name": "x"})
    plan = _PushPlan([small] * (2 * CHUNK_SIZE + 1))
    assert plan.split() == 3
    assert plan.bounds == [(0, CHUNK_SIZE), (CHUNK_SIZE, 2 * CHUNK_SIZE), (2 * CHUNK_SIZE, 4_001)]
    third = CHUNK_BYTES // 3
    large = [Job.from_func(tasks.greet, kwargs={"name": str(i) * third}) for i in range(1, 8)]
    plan = _PushPlan(large)
    assert plan.split() == 4  # two per statement (a third would pass CHUNK_BYTES), and one
    assert plan.bounds == [(0, 2), (2, 4), (4, 6), (6, 7)]
    plan.unsplit()
    assert plan.bounds == [(0, 7)]
    assert _PushPlan([large[0]]).split() == 1
