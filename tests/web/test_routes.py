"""Every page and action of the dashboard through httpx's ASGI transport, against
PostgreSQL: what it shows, what it changes, and whom it refuses."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from starlette.requests import Request

from chancy.app import Chancy
from chancy.cron import Cron
from chancy.executor import Job
from chancy.models import JobRow
from chancy.repository import WorkerPresence, WorkerRepository
from chancy.repository.schedules import ScheduleRepository
from chancy.states import JobState
from chancy.web import create_app
from tests.support import tasks

pytest.importorskip("starlette")

SECRET_KWARGS = {
    "name": "ada",
    "password": "hunter2",
    "api_token": "t0k3n",
    "nested": {"Secret": 1},
}
JOB = Job.from_func(tasks.greet, kwargs={"name": "web"})
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost")


@pytest.fixture
async def web(chancy: Chancy) -> AsyncIterator[httpx.AsyncClient]:
    async with client(create_app(chancy)) as http:
        yield http


async def set_state(chancy: Chancy, job_id: int, state: JobState, **values: Any) -> None:
    async with chancy.engine.begin() as connection:
        await connection.execute(
            sa.update(JobRow).where(JobRow.id == job_id).values(state=state.value, **values)
        )


async def fail(chancy: Chancy, job: Job = JOB) -> int:
    """A job that failed once, with a traceback."""
    ref = await chancy.push("default", job)
    error = {"attempt": 1, "type": "ValueError", "message": "boom", "traceback": "Traceback: x"}
    await set_state(
        chancy, ref.id, JobState.FAILED, attempts=1, errors=[error], completed_at=sa.func.now()
    )
    return ref.id


async def state_of(chancy: Chancy, job_id: int) -> str | None:
    job = await chancy.get_job(job_id)
    return None if job is None else job.state.value


# Pages.


async def test_overview_counts_each_queues_jobs_by_state(
    chancy: Chancy, web: httpx.AsyncClient
) -> None:
    await chancy.push_many("default", [JOB] * 3)
    await fail(chancy)
    await chancy.pause_queue("other")
    page = await web.get("/")
    assert page.status_code == 200
    assert 'href="/jobs?queue=default&amp;state=pending">3</a>' in page.text
    assert 'href="/jobs?queue=default&amp;state=failed">1</a>' in page.text
    assert "paused" in page.text
    assert "<svg" in page.text


async def test_overview_estimates_counts_above_the_threshold(chancy: Chancy) -> None:
    await chancy.push_many("default", [JOB] * 30)
    async with chancy.engine.connect() as connection:
        await connection.execute(sa.text("COMMIT"))
        await connection.execute(sa.text("ANALYZE chancy_jobs"))
    async with client(create_app(chancy, count_exact_max=10)) as web:
        page = await web.get("/")
    assert ">≈30</a>" in page.text


async def test_jobs_list_filters_and_pages_by_id_newest_first(
    chancy: Chancy, web: httpx.AsyncClient
) -> None:
    refs = await chancy.push_many("default", [JOB] * 60)
    failed = await fail(chancy, JOB.with_unique_key("needle-7"))
    first = await web.get("/jobs")
    assert first.status_code == 200
    assert f'href="/jobs/{failed}"' in first.text
    assert f"before={refs[11].id}" in first.text  # 50 shown: the 61st newest is next
    older = await web.get(f"/jobs?before={refs[11].id}")
    assert f'href="/jobs/{refs[0].id}"' in older.text
    assert f'href="/jobs/{refs[11].id}"' not in older.text
    only_failed = await web.get("/jobs?state=failed")
    assert f'href="/jobs/{failed}"' in only_failed.text
    assert f'href="/jobs/{refs[0].id}"' not in only_failed.text
    assert f'href="/jobs/{failed}"' in (await web.get("/jobs?q=NEEDLE")).text
    assert f'href="/jobs/{failed}"' in (await web.get(f"/jobs?q={failed}")).text
    assert "No job matches" in (await web.get("/jobs?queue=other&func=nope")).text


async def test_job_page_redacts_secret_kwargs_and_shows_each_traceback(
    chancy: Chancy, web: httpx.AsyncClient
) -> None:
    job_id = await fail(chancy, JOB.with_kwargs(SECRET_KWARGS))
    page = await web.get(f"/jobs/{job_id}")
    assert page.status_code == 200
    assert "hunter2" not in page.text
    assert "t0k3n" not in page.text
    assert page.text.count("•••") == 3
    assert "ada" in page.text
    assert "Traceback: x" in page.text
    assert "ValueError" in page.text
    assert ">Retry</button>" in page.text
    assert ">Delete</button>" in page.text
    assert ">Cancel</button>" not in page.text


async def test_custom_redaction_list(chancy: Chancy) -> None:
    ref = await chancy.push("default", JOB.with_kwargs({"iban": "DE00", "password": "shown"}))
    async with client(create_app(chancy, redact=["iban"])) as web:
        page = await web.get(f"/jobs/{ref.id}")
    assert "DE00" not in page.text
    assert "shown" in page.text


async def test_an_unknown_job_is_404(web: httpx.AsyncClient) -> None:
    assert (await web.get("/jobs/987654")).status_code == 404


async def test_queues_workers_schedules_and_healthz(chancy: Chancy, web: httpx.AsyncClient) -> None:
    async with chancy.engine.begin() as connection:
        presence = WorkerPresence("host-a:1:abc", "host-a", 1, ("default", "other"), 7)
        await WorkerRepository().beat(connection, presence, 30)
        cron = Cron("*/5 * * * *", JOB, name="every-five")
        await ScheduleRepository().upsert(
            connection, cron, datetime.now(UTC) + timedelta(minutes=5)
        )
    queues = await web.get("/queues")
    assert ">Pause</button>" in queues.text
    assert "default" in queues.text
    workers = await web.get("/workers")
    assert "host-a:1:abc" in workers.text
    assert "default, other" in workers.text
    schedules = await web.get("/schedules")
    assert "every-five" in schedules.text
    assert "*/5 * * * *" in schedules.text
    health = await web.get("/healthz")
    assert health.json() == {"status": "ok"}


async def test_no_page_shows_the_database_password(chancy: Chancy, web: httpx.AsyncClient) -> None:
    password = chancy.engine.url.password
    await fail(chancy)
    for path in ("/", "/jobs", "/queues", "/workers", "/schedules", "/jobs/1"):
        page = await web.get(path)
        assert page.status_code in (200, 404)
        if password:
            assert password not in page.text
    assert "postgresql" not in (await web.get("/")).text


# Actions.


async def test_retry_cancel_and_delete_a_job(chancy: Chancy, web: httpx.AsyncClient) -> None:
    job_id = await fail(chancy)
    retried = await web.post(f"/jobs/{job_id}/retry", headers=SAME_ORIGIN)
    assert retried.status_code == 303
    assert retried.headers["location"].startswith(f"/jobs/{job_id}?notice=retried")
    assert await state_of(chancy, job_id) == "pending"
    assert (await web.post(f"/jobs/{job_id}/cancel", headers=SAME_ORIGIN)).status_code == 303
    assert await state_of(chancy, job_id) == "cancelled"
    assert (await web.post(f"/jobs/{job_id}/delete", headers=SAME_ORIGIN)).status_code == 303
    assert await state_of(chancy, job_id) is None


async def test_delete_refuses_an_unfinished_job(chancy: Chancy, web: httpx.AsyncClient) -> None:
    ref = await chancy.push("default", JOB)
    answer = await web.post(f"/jobs/{ref.id}/delete", headers=SAME_ORIGIN)
    assert "not+deleted" in answer.headers["location"]
    assert await state_of(chancy, ref.id) == "pending"


async def test_bulk_cancel_and_retry_touch_only_matching_jobs(
    chancy: Chancy, web: httpx.AsyncClient
) -> None:
    mine = await chancy.push_many("default", [JOB] * 7)
    other = await chancy.push("other", JOB)
    answer = await web.post("/jobs/cancel", data={"queue": "default"}, headers=SAME_ORIGIN)
    assert answer.status_code == 303
    assert "7+cancelled" in answer.headers["location"]
    assert {await state_of(chancy, ref.id) for ref in mine} == {"cancelled"}
    assert await state_of(chancy, other.id) == "pending"
    answer = await web.post(
        "/jobs/retry", data={"state": "cancelled", "q": str(mine[0].id)}, headers=SAME_ORIGIN
    )
    assert "1+retried" in answer.headers["location"]
    assert [await state_of(chancy, ref.id) for ref in mine[:2]] == ["pending", "cancelled"]


async def test_pause_and_resume_a_queue(chancy: Chancy, web: httpx.AsyncClient) -> None:
    await chancy.declare("default")
    assert (await web.post("/queues/default/pause", headers=SAME_ORIGIN)).status_code == 303
    assert {q.name: q.paused for q in await chancy.list_queues()}["default"] is True
    assert ">Resume</button>" in (await web.get("/queues")).text
    assert (await web.post("/queues/default/resume", headers=SAME_ORIGIN)).status_code == 303
    assert {q.name: q.paused for q in await chancy.list_queues()}["default"] is False


async def test_pausing_an_unknown_queue_says_so(web: httpx.AsyncClient) -> None:
    answer = await web.post("/queues/defualt/pause", headers=SAME_ORIGIN)
    assert answer.status_code == 409
    assert "did you mean" in answer.text


# Refusals.


async def test_a_cross_site_post_is_refused(chancy: Chancy, web: httpx.AsyncClient) -> None:
    job_id = await fail(chancy)
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "http://evil.test"}):
        answer = await web.post(f"/jobs/{job_id}/retry", headers=headers)
        assert answer.status_code == 403
    assert (
        await web.post(f"/jobs/{job_id}/retry", headers={"Origin": "http://localhost"})
    ).status_code == 303


async def test_read_only_shows_no_button_and_refuses_every_post(chancy: Chancy) -> None:
    job_id = await fail(chancy)
    await chancy.declare("default")
    async with client(create_app(chancy, read_only=True)) as web:
        for path in (f"/jobs/{job_id}", "/queues", "/jobs"):
            assert "<button" not in (await web.get(path)).text.replace(
                '<button type="submit">Filter', ""
            )
        for path in (f"/jobs/{job_id}/retry", "/queues/default/pause", "/jobs/cancel"):
            assert (await web.post(path, headers=SAME_ORIGIN)).status_code == 403
    assert await state_of(chancy, job_id) == "failed"


async def test_the_access_hook_decides(chancy: Chancy) -> None:
    def access(request: Request) -> str:
        return request.headers.get("x-level", "forbidden")

    job_id = await fail(chancy)
    async with client(create_app(chancy, access=access)) as web:  # type: ignore[arg-type]
        assert (await web.get("/")).status_code == 403
        assert (await web.get("/", headers={"x-level": "read_only"})).status_code == 200
        posted = await web.post(
            f"/jobs/{job_id}/retry", headers={"x-level": "read_only", **SAME_ORIGIN}
        )
        assert posted.status_code == 403
        posted = await web.post(f"/jobs/{job_id}/retry", headers={"x-level": "all", **SAME_ORIGIN})
        assert posted.status_code == 303


async def test_basic_auth_from_the_environment(
    chancy: Chancy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHANCY_WEB_USER", "ops")
    monkeypatch.setenv("CHANCY_WEB_PASSWORD", "s3cret")

    def basic(user: str, password: str) -> dict[str, str]:
        return {
            "Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        }

    async with client(create_app(chancy)) as web:
        refused = await web.get("/")
        assert refused.status_code == 401
        assert "Basic" in refused.headers["www-authenticate"]
        assert (await web.get("/", headers=basic("ops", "wrong"))).status_code == 401
        assert (await web.get("/", headers=basic("ops", "s3cret"))).status_code == 200
        assert (await web.get("/healthz")).status_code == 200  # for load balancers


async def test_mounted_under_a_prefix_its_links_keep_the_prefix(chancy: Chancy) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    job_id = await fail(chancy)
    outer = Starlette(routes=[Mount("/chancy", app=create_app(chancy))])
    async with client(outer) as web:
        page = await web.get("/chancy/jobs")
        assert f'href="/chancy/jobs/{job_id}"' in page.text
        assert 'src="/chancy/static/htmx.min.js"' in page.text
        assert (await web.get("/chancy/static/htmx.min.js")).status_code == 200
        answer = await web.post(f"/chancy/jobs/{job_id}/retry", headers=SAME_ORIGIN)
        assert answer.headers["location"].startswith(f"/chancy/jobs/{job_id}?")
