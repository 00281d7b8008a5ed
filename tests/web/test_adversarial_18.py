"""The dashboard attacked: hostile stored values and query strings, forged and
cross-site requests, read-only sessions trying every action, broken access hooks, a
database that goes away mid-request, actions racing other changes, and workers that
share an id or stop beating. Each test states what the dashboard must do."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import traceback
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Mount

from chancy.app import Chancy
from chancy.errors import ChancyError
from chancy.executor import Job
from chancy.models import JobRow
from chancy.queue import Queue
from chancy.repository import WorkerPresence, WorkerRepository
from chancy.web import create_app
from tests.support import tasks

pytest.importorskip("starlette")

JOB = Job.from_func(tasks.greet, kwargs={"name": "adversary"})
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}
SCRIPT = "<script>alert(1)</script>"
HOSTILE = f"{SCRIPT}\"'></textarea></pre>javascript:alert(2)"

# ADV_RAISE=1: let a failing handler's exception through, to see its traceback.
RAISE = bool(os.environ.get("ADV_RAISE"))
PAGES = ("/", "/jobs", "/queues", "/workers", "/schedules")


def client(app: Any, base_url: str = "http://localhost") -> httpx.AsyncClient:
    """A client that sees a failing handler's 500 as a browser would."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=RAISE)
    return httpx.AsyncClient(transport=transport, base_url=base_url)


@pytest.fixture
async def web(chancy: Chancy) -> AsyncIterator[httpx.AsyncClient]:
    async with client(create_app(chancy)) as http:
        yield http


async def execute(chancy: Chancy, statement: Any, parameters: dict[str, Any] | None = None) -> Any:
    async with chancy.engine.begin() as connection:
        return await connection.execute(statement, parameters or {})


async def failed_job(chancy: Chancy, job: Job = JOB, **values: Any) -> int:
    ref = await chancy.push("default", job)
    error = {"attempt": 1, "type": "ValueError", "message": "boom", "traceback": "Traceback: x"}
    values = {"attempts": 1, "errors": [error], "completed_at": sa.func.now(), **values}
    await execute(
        chancy,
        sa.update(JobRow).where(JobRow.id == ref.id).values(state="failed", **values),
    )
    return ref.id


async def state_of(chancy: Chancy, job_id: int) -> str | None:
    job = await chancy.get_job(job_id)
    return None if job is None else job.state.value


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


# Hostile stored values: every page renders them escaped, never a 500.


async def test_hostile_values_in_every_column_render_escaped(
    chancy: Chancy, web: httpx.AsyncClient
) -> None:
    error = {"attempt": 1, "type": HOSTILE, "message": HOSTILE, "traceback": HOSTILE}
    job_id = await failed_job(
        chancy,
        JOB.with_kwargs({"name": HOSTILE, HOSTILE: [HOSTILE, {"deep": HOSTILE}]}),
        errors=[error],
        result={"html": HOSTILE},
        func=f"tasks.{SCRIPT}",
        unique_key=HOSTILE,
        worker_id=HOSTILE,
        queue=SCRIPT,
    )
    async with chancy.engine.begin() as connection:
        await WorkerRepository().beat(
            connection, WorkerPresence(HOSTILE, HOSTILE, 1, (SCRIPT,), 1), 60
        )
    for path in (*PAGES, f"/jobs/{job_id}", f"/jobs?q={SCRIPT}", f"/jobs?func={SCRIPT}"):
        page = await web.get(path)
        assert page.status_code == 200, path
        assert SCRIPT not in page.text, path
        assert "</textarea></pre>" not in page.text, path
    job_page = (await web.get(f"/jobs/{job_id}")).text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in job_page
    assert "&lt;script&gt;" in (await web.get("/workers")).text
    assert "&lt;script&gt;" in (await web.get("/")).text  # the queue name of the counts


async def test_the_notice_is_escaped(web: httpx.AsyncClient) -> None:
    page = await web.get("/jobs", params={"notice": SCRIPT})
    assert page.status_code == 200
    assert SCRIPT not in page.text
    assert "&lt;script&gt;" in page.text


async def test_a_megabyte_of_kwargs_and_a_lone_surrogate_render(
    chancy: Chancy, web: httpx.AsyncClient
) -> None:
    big = "x" * 1_000_000
    ref = await chancy.push("default", JOB.with_kwargs({"big": big}))
    page = await web.get(f"/jobs/{ref.id}")
    assert page.status_code == 200
    assert big in page.text
    # A lone surrogate's UTF-8 bytes (invalid UTF-8) in the query string.
    assert (await web.get("/jobs?q=%ED%A0%80&queue=%ED%A0%80")).status_code == 200


async def test_deeply_nested_kwargs_render_instead_of_a_500(
    chancy: Chancy, web: httpx.AsyncClient
) -> None:
    ref = await chancy.push("default", JOB)
    depth = 5000
    await execute(
        chancy,
        sa.text("UPDATE chancy_jobs SET kwargs = CAST(:v AS jsonb) WHERE id = :id"),
        {"v": '{"a":' + "[" * depth + "]" * depth + "}", "id": ref.id},
    )
    page = await web.get(f"/jobs/{ref.id}")
    assert page.status_code in (200, 409), page.status_code
    assert (await web.get("/jobs")).status_code == 200


# Hostile query strings and ids.


@pytest.mark.parametrize(
    "query",
    [
        {"state": "bogus"},
        {"q": "%"},
        {"q": "_"},
        {"q": "\\"},
        {"q": "x" * 30_000},
        {"before": "-5"},
        {"before": "99999999999999999999999"},
        {"before": "abc"},
        {"func": "'; DROP TABLE chancy_jobs; --"},
    ],
)
async def test_hostile_filters_answer_200(
    chancy: Chancy, web: httpx.AsyncClient, query: dict[str, str]
) -> None:
    await chancy.push("default", JOB.with_unique_key("plain"))
    page = await web.get("/jobs", params=query)
    assert page.status_code == 200, page.text[:300]
    if "q" in query and query["q"] in ("%", "_", "\\"):
        assert "No job matches" in page.text  # a wildcard is matched literally


@pytest.mark.parametrize("name", ["queue", "func", "q", "state"])
async def test_a_nul_in_a_filter_is_not_a_500(web: httpx.AsyncClient, name: str) -> None:
    page = await web.get("/jobs", params={name: "a\x00b"})
    assert page.status_code < 500, page.status_code


@pytest.mark.parametrize("query", [{"q": "²"}, {"before": "²"}])
async def test_a_superscript_digit_is_not_a_500(
    web: httpx.AsyncClient, query: dict[str, str]
) -> None:
    assert (await web.get("/jobs", params=query)).status_code == 200


async def test_a_superscript_digit_in_a_bulk_filter_is_not_a_500(
    chancy: Chancy, web: httpx.AsyncClient
) -> None:
    job_id = await failed_job(chancy)
    answer = await web.post("/jobs/retry", data={"q": "²"}, headers=SAME_ORIGIN)
    assert answer.status_code == 303, answer.status_code
    assert await state_of(chancy, job_id) == "failed"


@pytest.mark.parametrize("path", ["/jobs/99999999999999999999", "/jobs/9223372036854775808"])
async def test_an_id_beyond_bigint_is_404_not_500(web: httpx.AsyncClient, path: str) -> None:
    assert (await web.get(path)).status_code == 404


@pytest.mark.parametrize("action", ["retry", "cancel", "delete"])
async def test_an_action_on_an_id_beyond_bigint_is_not_500(
    web: httpx.AsyncClient, action: str
) -> None:
    answer = await web.post(f"/jobs/99999999999999999999/{action}", headers=SAME_ORIGIN)
    assert answer.status_code in (303, 404), answer.status_code


async def test_non_integer_ids_are_404(web: httpx.AsyncClient) -> None:
    for path in ("/jobs/abc", "/jobs/-1", "/jobs/1.5", "/jobs/%00"):
        assert (await web.get(path)).status_code == 404, path
    answer = await web.post("/jobs/abc/retry", headers=SAME_ORIGIN)
    assert answer.status_code in (404, 405)


async def test_keyset_pages_neither_skip_nor_repeat_while_jobs_arrive(
    chancy: Chancy, web: httpx.AsyncClient
) -> None:
    refs = await chancy.push_many("default", [JOB] * 120)
    seen: list[int] = []
    url = "/jobs"
    import re

    while url:
        page = await web.get(url)
        seen += [int(i) for i in re.findall(r'<td class="num"><a href="/jobs/(\d+)"', page.text)]
        await chancy.push_many("default", [JOB] * 7)  # newer ids arrive between pages
        older = re.search(r'href="(/jobs\?[^"]*before=\d+)"', page.text)
        url = older.group(1).replace("&amp;", "&") if older else ""
    original = [ref.id for ref in refs]
    assert len(seen) == len(set(seen))
    assert sorted(seen) == sorted(original)


# Cross-site requests.


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "null"},
        {"Origin": "http://localhost:8080"},
        {"Origin": "https://localhost.evil.example"},
        {"Origin": "http://evil.example", "Referer": "http://localhost/jobs"},
        {"Sec-Fetch-Site": "same-site", "Origin": "http://localhost"},
        {"Sec-Fetch-Site": "none"},
        {"Sec-Fetch-Site": "cross-site", "Origin": "http://localhost"},
    ],
)
async def test_cross_site_posts_are_refused(
    chancy: Chancy, web: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    job_id = await failed_job(chancy)
    for path in (f"/jobs/{job_id}/retry", "/jobs/retry", f"/jobs/{job_id}/delete"):
        assert (await web.post(path, headers=headers)).status_code == 403, path
    assert await state_of(chancy, job_id) == "failed"


async def test_mounted_the_origin_check_still_applies(chancy: Chancy) -> None:
    job_id = await failed_job(chancy)
    outer = Starlette(routes=[Mount("/chancy", app=create_app(chancy))])
    async with client(outer) as web:
        refused = await web.post(
            f"/chancy/jobs/{job_id}/retry", headers={"Origin": "http://evil.example"}
        )
        assert refused.status_code == 403
        allowed = await web.post(
            f"/chancy/jobs/{job_id}/retry", headers={"Origin": "http://localhost"}
        )
        assert allowed.status_code == 303
    assert await state_of(chancy, job_id) == "pending"


async def test_a_rebound_host_name_is_refused_without_auth(chancy: Chancy) -> None:
    job_id = await failed_job(chancy)
    evil = {"Host": "rebind.evil.example:8000"}
    async with client(create_app(chancy), base_url="http://rebind.evil.example:8000") as web:
        page = await web.get(f"/jobs/{job_id}", headers=evil)
        posted = await web.post(
            f"/jobs/{job_id}/delete",
            headers={**evil, "Origin": "http://rebind.evil.example:8000", **SAME_ORIGIN},
        )
    assert page.status_code in (400, 403, 421)
    assert posted.status_code in (400, 403, 421)
    assert await state_of(chancy, job_id) == "failed"


# Read-only and forbidden sessions against every action.


def action_paths(job_id: int) -> list[str]:
    return [
        f"/jobs/{job_id}/retry",
        f"/jobs/{job_id}/cancel",
        f"/jobs/{job_id}/delete",
        f"/jobs/{job_id}/nonsense",
        "/jobs/retry",
        "/jobs/cancel",
        "/queues/default/pause",
        "/queues/default/resume",
        "/queues/default/nonsense",
    ]


async def test_read_only_sessions_can_do_nothing_by_any_url(chancy: Chancy) -> None:
    job_id = await failed_job(chancy)
    pending = await chancy.push("default", JOB)
    await chancy.declare("default")

    def read_only_hook(request: Request) -> str:
        return "read_only"

    async def all_but_read_only_app(request: Request) -> str:
        return "all"

    apps = [
        create_app(chancy, read_only=True),
        create_app(chancy, access=read_only_hook),  # type: ignore[arg-type]
        create_app(chancy, access=all_but_read_only_app, read_only=True),  # type: ignore[arg-type]
    ]
    for app in apps:
        async with client(app) as web:
            for path in action_paths(job_id):
                for method in ("POST", "PUT", "DELETE", "PATCH"):
                    answer = await web.request(method, path, headers=SAME_ORIGIN)
                    assert answer.status_code in (403, 405), (method, path)
                    if method == "POST":
                        assert answer.status_code == 403, path
    assert await state_of(chancy, job_id) == "failed"
    assert await state_of(chancy, pending.id) == "pending"
    assert not {q.name: q.paused for q in await chancy.list_queues()}["default"]


async def test_forbidden_sessions_see_no_page_and_no_events(chancy: Chancy) -> None:
    job_id = await failed_job(chancy)

    def forbidden(request: Request) -> str:
        return "forbidden"

    async with client(create_app(chancy, access=forbidden)) as web:  # type: ignore[arg-type]
        for path in (*PAGES, f"/jobs/{job_id}", "/events", "/static/../app.py"):
            answer = await web.get(path)
            assert answer.status_code in (403, 404), path
            assert "ValueError" not in answer.text
        for path in action_paths(job_id):
            assert (await web.post(path, headers=SAME_ORIGIN)).status_code == 403
    assert await state_of(chancy, job_id) == "failed"


@pytest.mark.parametrize("returned", ["ALL", "", None, True, "all "])
async def test_an_access_hook_returning_nonsense_denies(chancy: Chancy, returned: Any) -> None:
    job_id = await failed_job(chancy)

    def hook(request: Request) -> Any:
        return returned

    async with client(create_app(chancy, access=hook)) as web:
        page = await web.get(f"/jobs/{job_id}")
        assert page.status_code >= 400
        assert "Traceback: x" not in page.text
        assert (await web.post(f"/jobs/{job_id}/delete", headers=SAME_ORIGIN)).status_code >= 400
    assert await state_of(chancy, job_id) == "failed"


async def test_an_access_hook_that_raises_denies(chancy: Chancy) -> None:
    job_id = await failed_job(chancy)

    async def hook(request: Request) -> str:
        raise RuntimeError("session store down")

    async with client(create_app(chancy, access=hook)) as web:  # type: ignore[arg-type]
        for path in (*PAGES, f"/jobs/{job_id}", "/events"):
            answer = await web.get(path)
            assert answer.status_code >= 400, path
            assert "Traceback: x" not in answer.text
        for path in action_paths(job_id):
            assert (await web.post(path, headers=SAME_ORIGIN)).status_code >= 400
    assert await state_of(chancy, job_id) == "failed"


# HTTP Basic auth.


async def test_basic_auth_refuses_every_wrong_credential_and_guards_events(
    chancy: Chancy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHANCY_WEB_USER", "öps")
    monkeypatch.setenv("CHANCY_WEB_PASSWORD", "pässwörd:with colon")
    job_id = await failed_job(chancy)
    wrong = [
        basic("öps", ""),
        basic("öps", "pässwörd"),
        basic("öps", "pässwörd:with colon "),
        basic("", "pässwörd:with colon"),
        {"Authorization": "Basic"},
        {"Authorization": "Basic !!!"},
        {"Authorization": "Basic " + base64.b64encode(b"\xf6ps:x").decode()},
        {"Authorization": "Bearer " + base64.b64encode(b"ops:x").decode()},
        {
            "Authorization": "Basic "
            + base64.b64encode("öps:pässwörd:with colon".encode("latin-1")).decode()
        },
    ]
    async with client(create_app(chancy)) as web:
        for headers in wrong:
            for path in ("/", "/events", f"/jobs/{job_id}"):
                assert (await web.get(path, headers=headers)).status_code == 401, headers
            answer = await web.post(f"/jobs/{job_id}/delete", headers={**headers, **SAME_ORIGIN})
            assert answer.status_code == 401
        right = basic("öps", "pässwörd:with colon")
        assert (await web.get("/", headers=right)).status_code == 200
    assert await state_of(chancy, job_id) == "failed"


async def test_basic_auth_compares_in_constant_time() -> None:
    import inspect

    from chancy.web.access import BasicAuth

    source = inspect.getsource(BasicAuth.allows)
    assert source.count("compare_digest") == 2
    assert "==" not in source.split("scheme.lower()")[1]


# Secrets.


async def test_redaction_by_case_and_depth(chancy: Chancy, web: httpx.AsyncClient) -> None:
    kwargs = {
        "Password": "s1",
        "API_KEY": "s2",
        "items": [{"AccessToken": "s3"}, [{"client_SECRET": "s4"}]],
        "outer": {"inner": {"Authorization": "s5"}},
        "keys": ["s6"],  # the value of a "key" key, a list
    }
    ref = await chancy.push("default", JOB.with_kwargs(kwargs).with_meta({"token": "s7"}))
    await execute(
        chancy,
        sa.update(JobRow).where(JobRow.id == ref.id).values(result={"session_key": "s8"}),
    )
    page = await web.get(f"/jobs/{ref.id}")
    for secret in ("s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8"):
        assert f'"{secret}"' not in page.text, secret


async def test_redaction_of_header_pairs(chancy: Chancy, web: httpx.AsyncClient) -> None:
    kwargs = {"headers": [["Authorization", "Bearer sekrit-bearer"]]}
    ref = await chancy.push("default", JOB.with_kwargs(kwargs))
    page = await web.get(f"/jobs/{ref.id}")
    assert "sekrit-bearer" not in page.text


class TcpProxy:
    """A TCP forwarder to PostgreSQL that can be cut, so the database goes away."""

    def __init__(self, url: URL) -> None:
        socket_dir = url.query.get("host")
        self.unix = f"{socket_dir}/.s.PGSQL.{url.port or 5432}" if socket_dir else None
        self.target = (url.host or "127.0.0.1", url.port or 5432)
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if isinstance(self.unix, str):
            up_reader, up_writer = await asyncio.open_unix_connection(self.unix)
        else:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers += [writer, up_writer]

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            with contextlib.suppress(Exception):
                sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()


async def test_a_database_gone_mid_request_shows_no_dsn(
    database_url: URL, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = TcpProxy(database_url)
    port = await proxy.start()
    password = database_url.password or "pw-that-must-not-leak"
    query = {k: v for k, v in database_url.query.items() if k not in ("host", "port")}
    url = database_url.set(host="127.0.0.1", port=port, password=password, query=query)
    caplog.set_level(logging.DEBUG)
    async with Chancy(url, queues=[Queue(name="default")]) as chancy:
        job_id = await failed_job(chancy)
        async with client(create_app(chancy, statement_timeout=2)) as web:
            assert (await web.get(f"/jobs/{job_id}")).status_code == 200
            await proxy.cut()
            answers = [await web.get(path) for path in (*PAGES, f"/jobs/{job_id}", "/healthz")]
            answers.append(await web.post(f"/jobs/{job_id}/retry", headers=SAME_ORIGIN))
            answers.append(await web.post("/jobs/cancel", headers=SAME_ORIGIN))
        # What a server would log: the exception raised through the app, and its causes.
        app = create_app(chancy, statement_timeout=2)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as raw:
            with pytest.raises((ChancyError, sa.exc.DBAPIError, OSError)) as raised:
                await raw.get("/jobs")
    logged = "".join(traceback.format_exception(raised.value))
    assert password not in logged
    for answer in answers:
        assert answer.status_code >= 500 or answer.status_code == 409
        assert password not in answer.text
        assert str(port) not in answer.text
    assert answers[-3].status_code == 503  # healthz
    assert password not in caplog.text


# Actions racing other changes.


async def test_actions_on_a_job_that_changed_meanwhile(
    chancy: Chancy, web: httpx.AsyncClient
) -> None:
    job_id = await failed_job(chancy)
    first = await web.post(f"/jobs/{job_id}/retry", headers=SAME_ORIGIN)
    again = await web.post(f"/jobs/{job_id}/retry", headers=SAME_ORIGIN)  # double submit
    assert "notice=retried" in first.headers["location"]
    assert "not+retried" in again.headers["location"]
    assert (await web.post(f"/jobs/{job_id}/delete", headers=SAME_ORIGIN)).status_code == 303
    assert await state_of(chancy, job_id) == "pending"  # pending: not deleted
    await execute(
        chancy,
        sa.update(JobRow)
        .where(JobRow.id == job_id)
        .values(state="succeeded", completed_at=sa.func.now()),
    )
    cancelled = await web.post(f"/jobs/{job_id}/cancel", headers=SAME_ORIGIN)
    assert "not+cancelled" in cancelled.headers["location"]
    deleted = await web.post(f"/jobs/{job_id}/delete", headers=SAME_ORIGIN)
    assert "deleted" in deleted.headers["location"]
    for action in ("retry", "cancel", "delete"):  # gone meanwhile
        answer = await web.post(f"/jobs/{job_id}/{action}", headers=SAME_ORIGIN)
        assert answer.status_code == 303, action
        assert "not+" in answer.headers["location"], action
    assert (await web.get(f"/jobs/{job_id}")).status_code == 404


async def test_concurrent_bulk_cancels_count_each_job_once(
    chancy: Chancy, web: httpx.AsyncClient
) -> None:
    refs = await chancy.push_many("default", [JOB] * 1200)
    answers = await asyncio.gather(
        *[web.post("/jobs/cancel", data={"queue": "default"}, headers=SAME_ORIGIN) for _ in "ab"]
    )
    import re

    counts = [
        int(re.search(r"notice=(\d+)\+cancelled", a.headers["location"]).group(1))  # type: ignore[union-attr]
        for a in answers
    ]
    assert sum(counts) == len(refs)
    assert {await state_of(chancy, ref.id) for ref in refs[::97]} == {"cancelled"}


@pytest.mark.parametrize("action", ["pause", "resume"])
async def test_pausing_or_resuming_an_unknown_queue_says_so(
    web: httpx.AsyncClient, action: str
) -> None:
    answer = await web.post(f"/queues/nosuchqueue/{action}", headers=SAME_ORIGIN)
    assert answer.status_code == 409
    answer = await web.post(f"/queues/{SCRIPT.replace('/', '')}/{action}", headers=SAME_ORIGIN)
    assert answer.status_code in (404, 409)
    assert "<script>" not in answer.text


# The workers table.


async def test_two_workers_with_one_id_and_a_silent_worker(chancy: Chancy) -> None:
    repository = WorkerRepository()
    async with chancy.engine.begin() as connection:
        await repository.beat(connection, WorkerPresence("twin", "host-a", 1, ("a",), 1), 60)
        await repository.beat(connection, WorkerPresence("twin", "host-b", 2, ("b",), 2), 60)
        await repository.beat(connection, WorkerPresence("dead", "host-c", 3, ("a",), 1), 60)
        await connection.execute(
            sa.text(
                "UPDATE chancy_workers SET expires_at = now() - interval '1 second' "
                "WHERE id = 'dead'"
            )
        )
        live = await repository.list_live(connection)
        assert [worker.id for worker in live] == ["twin"]  # the silent one is not shown
        assert await repository.prune_expired_many(connection, 10) == 1
        assert await repository.prune_expired_many(connection, 10) == 0
        # a pruned worker that beats again comes back
        await repository.beat(connection, WorkerPresence("dead", "host-c", 3, ("a",), 1), 60)
        assert {worker.id for worker in await repository.list_live(connection)} == {
            "twin",
            "dead",
        }


async def test_a_reused_worker_id_shows_its_latest_writer(chancy: Chancy) -> None:
    repository = WorkerRepository()
    async with chancy.engine.begin() as connection:
        await repository.beat(connection, WorkerPresence("twin", "host-a", 1, ("a",), 1), 60)
        await repository.beat(connection, WorkerPresence("twin", "host-b", 2, ("b",), 2), 60)
        (worker,) = await repository.list_live(connection)
    assert worker.host == "host-b"


async def test_a_negative_ttl_worker_is_never_shown(chancy: Chancy) -> None:
    """Clock skew between worker and database does not matter: every time is the
    database's; a row whose expiry has passed is not live."""
    repository = WorkerRepository()
    async with chancy.engine.begin() as connection:
        await repository.beat(connection, WorkerPresence("skewed", "h", 1, ("a",), 1), -5)
        assert await repository.list_live(connection) == []
