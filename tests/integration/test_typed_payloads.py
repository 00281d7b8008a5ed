"""Typed payloads through a real worker: kwargs validated at ``Job.from_func``, stored as
JSON, given back to the function as the types it declares, on every executor; stored
kwargs that no longer fit fail once; compatible changes and renamed functions run."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from uuid import uuid4

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL
from typer.testing import CliRunner

from chancy.app import Chancy
from chancy.cli import app as cli
from chancy.errors import InvalidKwargsError
from chancy.executor import Job
from chancy.models import JobRow
from chancy.payloads import MASK
from chancy.queue import ExecutorName, Queue
from chancy.states import JobState
from chancy.worker import Worker
from tests.support import typed_tasks
from tests.support.rows import insert_job_row
from tests.support.typed_tasks import Colour, Credentials, Line, OrderV1, Point, Receipt

EXECUTORS: list[ExecutorName] = ["asyncio", "threads", "processes"]
TASKS = "tests.support.typed_tasks"


@pytest.fixture(autouse=True)
def clean_recorders() -> None:
    typed_tasks.calls.clear()


def queue(executor: ExecutorName = "asyncio") -> Queue:
    return Queue(name="default", concurrency=4, executor=executor, polling_interval=0.1)


@pytest.fixture(params=EXECUTORS)
async def app_on_each_executor(
    request: pytest.FixtureRequest, database_url: URL
) -> AsyncIterator[Chancy]:
    async with Chancy(database_url, queues=[queue(request.param)]) as chancy:
        yield chancy


@pytest.fixture
async def app(database_url: URL) -> AsyncIterator[Chancy]:
    async with Chancy(database_url, queues=[queue()]) as chancy:
        yield chancy


def a_receipt() -> Receipt:
    sent_at = datetime(2024, 5, 17, 9, 30, 15, 123456, tzinfo=UTC)
    return Receipt(
        order_id=42,
        total=Decimal("1234.50"),
        sent_at=sent_at,
        ref=uuid4(),
        lines=[
            Line(sku=uuid4(), prices=[[Decimal("0.10"), Decimal("3")], []], shipped=[sent_at]),
            Line(sku=uuid4(), prices=[[Decimal("-7.125")]]),
        ],
    )


async def test_a_model_with_datetime_uuid_decimal_and_nested_lists_round_trips_equal(
    app_on_each_executor: Chancy,
) -> None:
    app, receipt = app_on_each_executor, a_receipt()
    note = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    kwargs = {
        "receipt": receipt,
        "colour": Colour.BLUE,
        "where": Point(Decimal("1.5"), Decimal("-2")),
        "mode": "sms",
        "note": note,
    }
    ref = await app.push(Job.from_func(typed_tasks.send_receipt, kwargs=kwargs))
    async with Worker(app):
        done = await app.wait_for_job(ref, timeout=30)
    assert done.state is JobState.SUCCEEDED, done.errors
    result = done.result
    assert Receipt.model_validate(result["receipt"]) == receipt
    assert result["colour"] == "blue"
    assert [Decimal(value) for value in result["where"]] == [Decimal("1.5"), Decimal("-2")]
    assert result["mode"] == "sms"
    assert datetime.fromisoformat(result["note"]) == note
    assert result["retries_left"] == 3  # a default: never stored, applied at run time


async def test_kwargs_are_stored_as_their_json_form_only_with_the_keys_given(app: Chancy) -> None:
    receipt = a_receipt()
    kwargs = {"receipt": receipt, "colour": Colour.RED, "where": Point(Decimal(1), Decimal(2))}
    ref = await app.push(Job.from_func(typed_tasks.send_receipt, kwargs={**kwargs, "mode": "mail"}))
    async with app.engine.connect() as connection:
        stored = await connection.scalar(sa.select(JobRow.kwargs).where(JobRow.id == ref.id))
    assert stored == {
        "receipt": json.loads(receipt.model_dump_json()),
        "colour": "red",
        "where": {"x": "1", "y": "2"},
        "mode": "mail",
    }


async def test_invalid_kwargs_fail_at_from_func_naming_the_field_and_store_nothing(
    app: Chancy,
) -> None:
    bad = json.loads(a_receipt().model_dump_json())
    bad["total"] = "twelve"
    bad["lines"][1]["prices"][0][0] = "free"
    kwargs = {"receipt": bad, "colour": "red", "where": {"x": 1, "y": 2}, "mode": "fax"}
    with pytest.raises(InvalidKwargsError) as caught:
        await app.push(Job.from_func(typed_tasks.send_receipt, kwargs=kwargs))
    message = str(caught.value)
    assert "receipt.total: Input should be a valid decimal" in message
    assert "receipt.lines[1].prices[0][0]: Input should be a valid decimal" in message
    assert "mode: Input should be 'mail' or 'sms'" in message
    assert "twelve" not in message  # never the input: it may be a secret
    async with app.engine.connect() as connection:
        assert await connection.scalar(sa.select(sa.func.count()).select_from(JobRow)) == 0


async def test_a_stored_payload_that_no_longer_fits_fails_once_without_a_retry(
    app_on_each_executor: Chancy,
) -> None:
    app = app_on_each_executor
    # Written by the function's first version (an order without a warehouse), stored
    # under the name of its current version, which requires one.
    old = Job.from_func(typed_tasks.ship_v1, kwargs={"order": OrderV1(number=7)})
    ref = await app.push(
        dataclasses.replace(old, func=f"{TASKS}.ship_strictly").with_max_attempts(3)
    )
    async with Worker(app):
        done = await app.wait_for_job(ref, timeout=30)
    assert (done.state, done.attempts) == (JobState.FAILED, 1)
    (error,) = done.errors
    assert error["type"] == "IncompatiblePayloadError"
    assert "order.warehouse: Field required" in error["message"]
    assert "predates the function's current signature" in error["message"]


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"order": {"number": "seven"}}, "order.number: Input should be a valid integer"),
        ({"order": {"number": 7}, "speed": 3}, "it has no parameter 'speed'"),
        ({}, "order: Field required"),
    ],
    ids=["changed type", "removed parameter", "added parameter"],
)
async def test_a_row_whose_kwargs_do_not_fit_fails_once_naming_the_field(
    app: Chancy, kwargs: dict[str, object], problem: str
) -> None:
    job_id = await insert_job_row(app.engine, func=f"{TASKS}.ship", kwargs=kwargs, max_attempts=3)
    async with Worker(app):
        done = await app.wait_for_job(job_id, timeout=30)
    assert (done.state, done.attempts) == (JobState.FAILED, 1)
    assert done.errors[0]["type"] == "IncompatiblePayloadError"
    assert problem in done.errors[0]["message"]


async def test_a_job_pushed_before_defaults_were_added_still_runs(
    app_on_each_executor: Chancy,
) -> None:
    app = app_on_each_executor
    # ship() has a model field (express) and two parameters (carrier, when) that
    # ship_v1() had not, all with defaults.
    old = Job.from_func(typed_tasks.ship_v1, kwargs={"order": OrderV1(number=7)})
    ref = await app.push(dataclasses.replace(old, func=f"{TASKS}.ship"))
    async with Worker(app):
        done = await app.wait_for_job(ref, timeout=30)
    assert (done.state, done.result) == (JobState.SUCCEEDED, "7 express=False by post when=None")


@pytest.mark.parametrize("executor", EXECUTORS)
async def test_a_job_stored_under_an_old_name_runs_the_aliased_function(
    database_url: URL, executor: ExecutorName
) -> None:
    async with Chancy(
        database_url,
        queues=[queue(executor)],
        allowed=[f"{TASKS}.renamed"],
        aliases={f"{TASKS}.old_name": f"{TASKS}:renamed"},
    ) as app:
        job_id = await insert_job_row(
            app.engine, func=f"{TASKS}.old_name", kwargs={"order": {"number": 7}}
        )
        async with Worker(app):
            done = await app.wait_for_job(job_id, timeout=30)
    assert (done.state, done.result) == (JobState.SUCCEEDED, "renamed 7 express=False")
    assert done.func == f"{TASKS}.old_name"  # as stored


async def test_an_alias_is_allowed_under_its_new_name_not_its_old_one(database_url: URL) -> None:
    async with Chancy(
        database_url,
        queues=[queue()],
        allowed=[f"{TASKS}.old_name"],
        aliases={f"{TASKS}.old_name": f"{TASKS}.renamed"},
    ) as app:
        job_id = await insert_job_row(
            app.engine, func=f"{TASKS}.old_name", kwargs={"order": {"number": 7}}, max_attempts=3
        )
        async with Worker(app):
            done = await app.wait_for_job(job_id, timeout=30)
    assert (done.state, done.attempts) == (JobState.FAILED, 1)
    (error,) = done.errors
    assert error["type"] == "FunctionNotAllowedError"
    assert f"'{TASKS}.renamed' (the alias of '{TASKS}.old_name'" in error["message"]
    assert typed_tasks.calls == []


async def test_a_worker_s_aliases_add_to_the_app_s(database_url: URL) -> None:
    async with Chancy(database_url, queues=[queue()], allowed=[f"{TASKS}.*"]) as app:
        job_id = await insert_job_row(
            app.engine, func=f"{TASKS}.older_name", kwargs={"order": {"number": 8}}
        )
        async with Worker(app, aliases={f"{TASKS}.older_name": f"{TASKS}.renamed"}):
            done = await app.wait_for_job(job_id, timeout=30)
    assert (done.state, done.result) == (JobState.SUCCEEDED, "renamed 8 express=False")


async def test_secrets_reach_the_job_and_are_masked_in_repr_and_job_show(
    app_on_each_executor: Chancy,
) -> None:
    app = app_on_each_executor
    credentials = Credentials(user="ada", password="hunter2")  # type: ignore[arg-type]
    job = Job.from_func(typed_tasks.log_in, kwargs={"credentials": credentials, "token": "t0k3n"})
    ref = await app.push(job)
    async with Worker(app):
        done = await app.wait_for_job(ref, timeout=30)
    digest = hashlib.sha256(b"hunter2:t0k3n").hexdigest()
    assert (done.state, done.result) == (JobState.SUCCEEDED, f"ada:{digest}")
    assert done.kwargs == {"credentials": {"user": "ada", "password": "hunter2"}, "token": "t0k3n"}
    for shown in (repr(job), repr(done), f"{done!r}"):
        assert "hunter2" not in shown
        assert "t0k3n" not in shown
        assert MASK in shown
        assert "ada" in shown
    dsn = app.engine.url.render_as_string(hide_password=False)
    for options in ([], ["--json"]):
        output = await asyncio.to_thread(
            CliRunner().invoke, cli, ["job", "show", str(ref.id), "--dsn", dsn, *options]
        )
        assert output.exit_code == 0, output.output
        assert "hunter2" not in output.stdout
        assert "t0k3n" not in output.stdout
        assert MASK in output.stdout
        assert "ada" in output.stdout
    shown_json = json.loads(output.stdout)
    assert shown_json["kwargs"] == {"credentials": {"user": "ada", "password": MASK}, "token": MASK}
