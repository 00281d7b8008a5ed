"""The dashboard: a Starlette application over one :class:`~chancy.app.Chancy`.

Pages (relative to where it is mounted): ``/`` (the overview), ``/jobs`` (filters
``state``, ``queue``, ``func``, ``q``; keyset pages by id), ``/jobs/{id}``, ``/queues``,
``/workers``, ``/schedules``; ``/healthz`` for load balancers; ``/events``, the server-sent
events that keep open pages current. Actions are POSTs: ``/jobs/{id}/retry``,
``/jobs/{id}/cancel``, ``/jobs/{id}/delete``, ``/jobs/retry`` and ``/jobs/cancel`` (every
job the posted filter matches, in batches), ``/queues/{name}/pause`` and ``/resume``.

Bad input is answered, never a 500: an id beyond bigint is 404, a filter holding a NUL
400 naming the filter, a posted body over :data:`POST_BODY_MAX` bytes 413.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from chancy.database.engine import hot_connection
from chancy.database.timeouts import Timeouts, local_timeouts
from chancy.errors import ChancyError, UniqueKeyHeldError
from chancy.repository import WorkerRepository
from chancy.repository.dashboard import (
    COUNT_EXACT_MAX_DEFAULT,
    DashboardRepository,
    JobListFilters,
    RawJson,
)
from chancy.states import FINISHED_STATES, UNFINISHED_STATES, JobState
from chancy.web import render
from chancy.web.access import (
    REDACT_DEFAULT,
    Access,
    AccessHook,
    BasicAuth,
    Level,
    redacted,
    same_origin,
)
from chancy.web.live import DEBOUNCE_DEFAULT, LiveUpdates, Subscribe

if TYPE_CHECKING:
    from chancy.app import Chancy

__all__ = [
    "BULK_BATCH",
    "PAGE_SIZE",
    "POST_BODY_MAX",
    "STATEMENT_TIMEOUT_DEFAULT",
    "Dashboard",
    "create_app",
]

HERE = Path(__file__).parent
PAGE_SIZE = 50
BULK_BATCH = 500
STATEMENT_TIMEOUT_DEFAULT = 5.0
"""Seconds a page's statements may run before the page gives up (per request)."""
POST_BODY_MAX = 64 * 1024
"""Bytes an action's posted form may hold (its filters); more is refused with 413."""
BIGINT_MAX = 2**63 - 1
FILTERS = ("state", "queue", "func", "q")

Handler = Callable[[Request], Awaitable[Response]]


def create_app(
    chancy: Chancy,
    *,
    access: AccessHook | None = None,
    read_only: bool = False,
    redact: Iterable[str] = REDACT_DEFAULT,
    statement_timeout: float = STATEMENT_TIMEOUT_DEFAULT,
    count_exact_max: int = COUNT_EXACT_MAX_DEFAULT,
    debounce: float = DEBOUNCE_DEFAULT,
    allowed_hosts: Iterable[str] | None = None,
) -> Starlette:
    """The dashboard of ``chancy`` (open it before the first request) as an ASGI app, to
    serve with ``chancy web`` or mount in an application (``app.mount("/chancy", ...)``).

    ``access(request)`` returns ``"all"``, ``"read_only"`` or ``"forbidden"`` (or an
    awaitable of it); without it, HTTP Basic auth applies when ``CHANCY_WEB_USER`` and
    ``CHANCY_WEB_PASSWORD`` are set, else everyone may do everything. ``read_only``: no
    action for anyone. ``redact``: the kwargs keys (parts of them, case-insensitive) whose
    values show as ``•••``. ``statement_timeout``: seconds each page's reads may take.
    ``count_exact_max``: above this many jobs, the overview's counts are estimates
    (marked ≈). ``debounce``: the least seconds between two live updates of a page.

    ``allowed_hosts``: the host names (``Host`` header, any port) served besides the
    loopback ones (``localhost``, ``127.0.0.1``, ``[::1]``); ``"*.example.com"`` allows
    its subdomains, ``"*"`` any name. Left None, a dashboard with neither ``access`` nor
    Basic auth answers to loopback names only (400 to any other, saying how to allow
    it), so that no site can reach it through DNS rebinding; one with either answers to
    any name.
    """
    dashboard = Dashboard(
        chancy,
        Access(
            access,
            BasicAuth.from_environment(),
            read_only=read_only,
            allowed_hosts=allowed_hosts,
        ),
        redact=tuple(redact),
        timeouts=Timeouts(lock=None, statement=statement_timeout),
        count_exact_max=count_exact_max,
        live=LiveUpdates(debounce=debounce),
    )
    return dashboard.app()


class Dashboard:
    """The dashboard's handlers and what they share."""

    def __init__(
        self,
        chancy: Chancy,
        access: Access,
        *,
        redact: tuple[str, ...],
        timeouts: Timeouts,
        count_exact_max: int,
        live: LiveUpdates,
    ) -> None:
        self.chancy = chancy
        self.access = access
        self.redact = redact
        self.timeouts = timeouts
        self.count_exact_max = count_exact_max
        self.live = live
        self.reads = DashboardRepository()
        self.workers = WorkerRepository()
        self.templates = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(["html"]),
            enable_async=False,
        )
        render.install(self.templates)

    def app(self) -> Starlette:
        page, act = self.page, self.action
        routes = [
            Route("/", page(self.overview), name="overview"),
            Route("/jobs", page(self.jobs), name="jobs"),
            Route("/jobs/retry", act(self.retry_matching), methods=["POST"]),
            Route("/jobs/cancel", act(self.cancel_matching), methods=["POST"]),
            Route("/jobs/{job_id:int}", page(self.job), name="job"),
            Route("/jobs/{job_id:int}/{action:str}", act(self.job_action), methods=["POST"]),
            Route("/queues", page(self.queues), name="queues"),
            Route("/queues/{name:str}/{action:str}", act(self.queue_action), methods=["POST"]),
            Route("/workers", page(self.workers_page), name="workers"),
            Route("/schedules", page(self.schedules), name="schedules"),
            Route("/events", page(self.events), name="events"),
            Route("/healthz", self.healthz, name="healthz"),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]
        return Starlette(routes=routes, lifespan=self._lifespan)

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        # Runs when served by itself; mounted in an application, the live updates start
        # with the first page that asks for them, and end with the process.
        yield
        await self.live.stop()

    # The guards: every page asks who is asking, every action also whether it may act.

    def page(self, handler: Handler) -> Handler:
        async def guarded(request: Request) -> Response:
            level, refused = await self._admitted(request)
            if refused is not None:
                return refused
            request.state.level = level
            try:
                return await handler(request)
            except BadRequest as exc:
                return self.error(request, str(exc), status=exc.status)

        return guarded

    async def _admitted(self, request: Request) -> tuple[Level | None, Response | None]:
        """The request's access, and the answer that refuses it (None: admitted)."""
        wrong_host = self.access.host_refusal(request)
        if wrong_host is not None:
            return None, PlainTextResponse(wrong_host, status_code=400)
        level = await self.access.level(request)
        return level, _refusal(level)

    def action(self, handler: Handler) -> Handler:
        async def guarded(request: Request) -> Response:
            level, refused = await self._admitted(request)
            if refused is not None:
                return refused
            if level != "all":
                return PlainTextResponse("the dashboard is read-only for you", status_code=403)
            if not same_origin(request):
                return PlainTextResponse(
                    "cross-site request refused: actions come from the dashboard's own pages",
                    status_code=403,
                )
            request.state.level = level
            try:
                return await handler(request)
            except BadRequest as exc:
                return self.error(request, str(exc), status=exc.status)
            except ChancyError as exc:
                return self.error(request, str(exc), status=409)

        return guarded

    # Rendering.

    def render(
        self, request: Request, template: str, context: Mapping[str, Any], *, status: int = 200
    ) -> HTMLResponse:
        base = request.scope.get("root_path", "")
        level: Level = getattr(request.state, "level", "read_only")
        html = self.templates.get_template(template).render(
            request=request,
            base=base,
            can_act=level == "all",
            notice=request.query_params.get("notice"),
            **context,
        )
        return HTMLResponse(html, status_code=status)

    def error(self, request: Request, message: str, *, status: int) -> HTMLResponse:
        """The error page, saying ``message``."""
        return self.render(request, "error.html", {"message": message}, status=status)

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[Any]:
        """A transaction whose statements may run :attr:`timeouts` long at most."""
        async with (
            self.chancy.engine.begin() as connection,
            local_timeouts(connection, self.timeouts),
        ):
            yield connection

    # Pages.

    async def overview(self, request: Request) -> Response:
        queues = await self.chancy.list_queues()
        async with self.reading() as connection:
            counts = await self.reads.counts(connection, exact_max=self.count_exact_max)
            oldest = await self.reads.oldest_pending(connection)
            minutes = await self.reads.finished_per_minute(connection)
            now = await self.reads.now(connection)
        names = sorted({queue.name for queue in queues} | set(counts))
        paused = {queue.name for queue in queues if queue.paused}
        rows = [
            {
                "name": name,
                "paused": name in paused,
                "counts": counts[name].counts if name in counts else {},
                "estimated": name in counts and counts[name].estimated,
                "oldest": render.age(now, oldest.get(name)),
                "minutes": minutes.get(name, (0,) * 60),
            }
            for name in names
        ]
        return self.render(request, "overview.html", {"rows": rows, "states": list(JobState)})

    async def jobs(self, request: Request) -> Response:
        filters = _filters(request.query_params)
        before = _int(request.query_params.get("before"))
        async with self.reading() as connection:
            page = await self.reads.page(connection, filters, before=before, limit=PAGE_SIZE + 1)
        more = len(page) > PAGE_SIZE
        page = page[:PAGE_SIZE]
        query = {k: v for k, v in filters._asdict().items() if v}
        older = urlencode({**query, "before": page[-1].id}) if more and page else None
        context = {
            "jobs": page,
            "filters": filters,
            "query": urlencode(query),
            "older": older,
            "first_page": before is None,
            "states": list(JobState),
            "queues": [queue.name for queue in await self.chancy.list_queues()],
        }
        return self.render(request, "jobs.html", context)

    async def job(self, request: Request) -> Response:
        job_id = _job_id(request)
        try:
            job = None if job_id is None else await self.chancy.get_job(job_id)
        except RecursionError:
            # JSON nested deeper than Python decodes (written by hand): shown as stored.
            async with self.reading() as connection:
                job = await self.reads.job_as_stored(connection, job_id)  # type: ignore[arg-type]
        if job is None:
            return self.error(request, "there is no such job", status=404)
        context = {
            "job": job,
            "kwargs": self.shown(job.kwargs),
            "meta": self.shown(job.meta) if job.meta else None,
            "result": self.shown(job.result),
            "can_retry": job.state in (JobState.FAILED, JobState.CANCELLED),
            "can_cancel": job.state in UNFINISHED_STATES,
            "can_delete": job.state in FINISHED_STATES,
        }
        return self.render(request, "job.html", context)

    def shown(self, value: Any) -> str:
        """``value`` as a job's page shows it: redacted JSON, indented; JSON nested too
        deep to decode as stored (unless it holds a redacted word)."""
        if isinstance(value, RawJson):
            lowered = value.lower()
            if any(word.lower() in lowered for word in self.redact):
                return "(nested too deeply to show redacted)"
            return str(value)
        try:
            return render.pretty(redacted(value, self.redact))
        except RecursionError:
            return "(nested too deeply to show)"

    async def queues(self, request: Request) -> Response:
        queues = await self.chancy.list_queues()
        return self.render(request, "queues.html", {"queues": queues})

    async def workers_page(self, request: Request) -> Response:
        async with self.reading() as connection:
            workers = await self.workers.list_live(connection)
            now = await self.reads.now(connection)
        return self.render(request, "workers.html", {"workers": workers, "now": now})

    async def schedules(self, request: Request) -> Response:
        async with self.reading() as connection:
            schedules = await self.reads.schedules(connection)
        return self.render(request, "schedules.html", {"schedules": schedules})

    async def events(self, request: Request) -> Response:
        await self.live.ensure_started(self._subscribe)
        return StreamingResponse(
            self.live.stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def _subscribe(self) -> Subscribe:
        listener = await self.chancy.listener()
        return listener.subscribe

    async def healthz(self, request: Request) -> Response:
        try:
            async with self.reading() as connection:
                await self.reads.now(connection)
        except Exception:
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok"})

    # Actions.

    async def job_action(self, request: Request) -> Response:
        job_id, action = _job_id(request), request.path_params["action"]
        if job_id is None:
            return self.error(request, "there is no such job", status=404)
        notice = await self._act_on_job(job_id, action)
        if notice is None:
            return PlainTextResponse(f"unknown action {action!r}", status_code=404)
        return self.back(request, f"/jobs/{job_id}" if action != "delete" else "/jobs", notice)

    async def _act_on_job(self, job_id: int, action: str) -> str | None:
        if action == "retry":
            try:
                done = await self.chancy.retry_job(job_id)
            except UniqueKeyHeldError as exc:
                return str(exc)
            return "retried" if done else "not retried: only failed or cancelled jobs are"
        if action == "cancel":
            done = await self.chancy.cancel_job(job_id)
            return "cancelled" if done else "not cancelled: the job had finished already"
        if action == "delete":
            async with hot_connection(self.chancy.engine) as connection:
                deleted = await self.reads.delete_finished(connection, job_id)
            return f"job {job_id} deleted" if deleted else "not deleted: only finished jobs are"
        return None

    async def retry_matching(self, request: Request) -> Response:
        filters = _filters(await _posted(request))
        retried, skipped, after = 0, 0, 0
        async with hot_connection(self.chancy.engine) as connection:
            while True:
                batch = await self.reads.retry_matching_many(
                    connection, filters, after=after, limit=BULK_BATCH
                )
                if batch.last_id is None:
                    break
                retried, skipped, after = (
                    retried + batch.retried,
                    skipped + len(batch.skipped),
                    batch.last_id,
                )
        notice = f"{retried} retried" + (
            f", {skipped} skipped (unique key held)" if skipped else ""
        )
        return self.back(request, "/jobs?" + _query(filters), notice)

    async def cancel_matching(self, request: Request) -> Response:
        filters = _filters(await _posted(request))
        cancelled, after = 0, 0
        async with hot_connection(self.chancy.engine) as connection:
            while True:
                count, last_id = await self.reads.cancel_matching_many(
                    connection, filters, after=after, limit=BULK_BATCH
                )
                if last_id is None:
                    break
                cancelled, after = cancelled + count, last_id
        return self.back(request, "/jobs?" + _query(filters), f"{cancelled} cancelled")

    async def queue_action(self, request: Request) -> Response:
        name, action = request.path_params["name"], request.path_params["action"]
        _refuse_nul("queue name", name)
        if action == "pause":
            await self.chancy.pause_queue(name)
        elif action == "resume":
            await self.chancy.resume_queue(name)
        else:
            return PlainTextResponse(f"unknown action {action!r}", status_code=404)
        return self.back(request, "/queues", f"queue {name} {action}d")

    def back(self, request: Request, path: str, notice: str) -> Response:
        """To ``path`` (under the mount point), saying ``notice``: 303, so a reload of
        the page shown does not post again."""
        separator = "&" if "?" in path else "?"
        root = request.scope.get("root_path", "")
        location = f"{root}{path}{separator}{urlencode({'notice': notice})}"
        return RedirectResponse(location, status_code=303)


def _refusal(level: Level | None) -> Response | None:
    if level is None:
        return PlainTextResponse(
            "log in to see chancy's dashboard",
            status_code=401,
            headers={"WWW-Authenticate": 'Basic realm="chancy", charset="UTF-8"'},
        )
    if level == "forbidden":
        return PlainTextResponse("you may not see chancy's dashboard", status_code=403)
    return None


class BadRequest(Exception):
    """A request the dashboard cannot answer as asked: its message says why."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _refuse_nul(what: str, value: str) -> None:
    if "\x00" in value:
        raise BadRequest(
            f"the {what} holds a NUL character (\\x00), which no stored text can: remove it"
        )


def _filters(given: Mapping[str, Any]) -> JobListFilters:
    def text(name: str) -> str | None:
        if given.get(name) is None:
            return None
        value = str(given[name])
        _refuse_nul(f"{name} filter", value)
        return value.strip() or None

    return JobListFilters(**{name: text(name) for name in FILTERS})


def _job_id(request: Request) -> int | None:
    """The path's job id; None beyond bigint (no job has it)."""
    job_id = int(request.path_params["job_id"])
    return job_id if job_id <= BIGINT_MAX else None


async def _posted(request: Request) -> dict[str, str]:
    """An urlencoded form's fields (the first value of each): the only kind posted here,
    read without the multipart parser Starlette would need; at most
    :data:`POST_BODY_MAX` bytes of it."""
    too_large = BadRequest(
        f"the posted form is over {POST_BODY_MAX} bytes: the dashboard's forms hold only "
        "a job filter",
        status=413,
    )
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > POST_BODY_MAX:
        raise too_large
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > POST_BODY_MAX:
            raise too_large
    form = parse_qs(body.decode("utf-8", errors="replace"))
    return {name: values[0] for name, values in form.items()}


def _query(filters: JobListFilters) -> str:
    return urlencode({k: v for k, v in filters._asdict().items() if v})


def _int(value: str | None) -> int | None:
    """``value`` as an id when it is one (ASCII digits, within bigint), else None."""
    return int(value) if value and value.isascii() and value.isdigit() and len(value) < 19 else None
