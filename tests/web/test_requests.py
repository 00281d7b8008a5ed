"""What the dashboard answers to requests it must not serve as asked: another host name
while it has no auth, a broken access hook, an oversized or NUL-holding form, and a job
whose JSON is nested deeper than Python decodes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from starlette.requests import Request

from chancy.app import Chancy
from chancy.executor import Job
from chancy.web import create_app
from chancy.web.app import POST_BODY_MAX
from tests.support import tasks

pytest.importorskip("starlette")

JOB = Job.from_func(tasks.greet, kwargs={"name": "web"})
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}


def client(app: Any, base_url: str = "http://localhost") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


@pytest.fixture
async def web(chancy: Chancy) -> AsyncIterator[httpx.AsyncClient]:
    async with client(create_app(chancy)) as http:
        yield http


@pytest.mark.parametrize(
    "host", ["localhost", "LOCALHOST:8000", "127.0.0.1:8000", "127.0.0.2", "[::1]:8000", "[::1]"]
)
async def test_without_auth_loopback_names_are_served(web: httpx.AsyncClient, host: str) -> None:
    assert (await web.get("/", headers={"Host": host})).status_code == 200


@pytest.mark.parametrize("host", ["dashboard.example.com", "10.0.0.5:8000", "localhost.evil"])
async def test_without_auth_another_name_is_refused_saying_how_to_allow_it(
    web: httpx.AsyncClient, host: str
) -> None:
    answer = await web.get("/jobs", headers={"Host": host})
    assert answer.status_code == 400
    assert "allowed_hosts=" in answer.text
    assert "--allowed-host" in answer.text
    assert (await web.get("/events", headers={"Host": host})).status_code == 400


async def test_allowed_hosts_adds_names(chancy: Chancy) -> None:
    app = create_app(chancy, allowed_hosts=["dash.example.com", "*.internal.example"])
    async with client(app) as web:
        for host in ("dash.example.com:8443", "jobs.internal.example", "localhost"):
            assert (await web.get("/", headers={"Host": host})).status_code == 200, host
        for host in ("example.com", "internal.example.evil"):
            assert (await web.get("/", headers={"Host": host})).status_code == 400, host


async def test_with_an_access_hook_any_name_is_served(chancy: Chancy) -> None:
    def everyone(request: Request) -> str:
        return "all"

    async with client(create_app(chancy, access=everyone)) as web:  # type: ignore[arg-type]
        assert (await web.get("/", headers={"Host": "dash.example.com"})).status_code == 200


async def test_an_access_hook_that_raises_is_a_logged_403(
    chancy: Chancy, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(request: Request) -> str:
        raise RuntimeError("session store down")

    async with client(create_app(chancy, access=broken)) as web:  # type: ignore[arg-type]
        assert (await web.get("/jobs")).status_code == 403
    assert "session store down" in caplog.text


async def test_an_access_hook_returning_no_level_is_a_logged_403(
    chancy: Chancy, caplog: pytest.LogCaptureFixture
) -> None:
    def sloppy(request: Request) -> object:
        return ["all"]

    with caplog.at_level(logging.ERROR, "chancy.web"):
        async with client(create_app(chancy, access=sloppy)) as web:  # type: ignore[arg-type]
            assert (await web.get("/")).status_code == 403
    assert "returned ['all']" in caplog.text


async def test_a_posted_form_over_the_cap_is_413(chancy: Chancy, web: httpx.AsyncClient) -> None:
    ref = await chancy.push("default", JOB)
    body = "q=" + "x" * POST_BODY_MAX
    answer = await web.post(
        "/jobs/cancel",
        content=body,
        headers={**SAME_ORIGIN, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 413
    assert "bytes" in answer.text
    job = await chancy.get_job(ref)
    assert job is not None
    assert job.state.value == "pending"


async def test_a_nul_in_a_posted_filter_is_400_naming_it(
    chancy: Chancy, web: httpx.AsyncClient
) -> None:
    answer = await web.post("/jobs/cancel", data={"queue": "a\x00b"}, headers=SAME_ORIGIN)
    assert answer.status_code == 400
    assert "queue filter" in answer.text


DEEP = "[" * 5000 + "]" * 5000  # valid jsonb, deeper than Python's json decodes


async def store_kwargs(chancy: Chancy, job_id: int, text: str, more: str = "") -> None:
    """Write ``text`` as the job's kwargs by hand (and ``more`` of the SET clause)."""
    async with chancy.engine.begin() as connection:
        await connection.execute(
            sa.text(f"UPDATE chancy_jobs SET kwargs = CAST(:v AS jsonb){more} WHERE id = :id"),
            {"v": text, "id": job_id},
        )


async def test_a_job_nested_too_deep_to_decode_shows_as_stored_and_can_be_deleted(
    chancy: Chancy, web: httpx.AsyncClient
) -> None:
    ref = await chancy.push("default", JOB)
    await store_kwargs(chancy, ref.id, '{"a": ' + DEEP + "}", ", state = 'cancelled'")
    page = await web.get(f"/jobs/{ref.id}")
    assert page.status_code == 200
    assert "[" * 5000 in page.text
    assert f"/jobs/{ref.id}/delete" in page.text
    deleted = await web.post(f"/jobs/{ref.id}/delete", headers=SAME_ORIGIN)
    assert "deleted" in deleted.headers["location"]
    assert await chancy.get_job(ref) is None


async def test_json_nested_too_deep_with_a_redacted_word_is_not_shown(
    chancy: Chancy, web: httpx.AsyncClient
) -> None:
    ref = await chancy.push("default", JOB)
    await store_kwargs(chancy, ref.id, '{"password": "hunter2", "a": ' + DEEP + "}")
    page = await web.get(f"/jobs/{ref.id}")
    assert page.status_code == 200
    assert "hunter2" not in page.text
    assert "nested too deeply" in page.text
