"""D1: the dashboard's pages with 2,000,000 jobs in the table.

The jobs are written by SQL (``INSERT ... SELECT generate_series``, as S5 does), then the
table is analyzed: mostly succeeded jobs, finished over the last day, and a share of
pending, running, failed and cancelled ones spread among them, across a few queues. The
overview (``/``), the first page of ``/jobs`` and the first page of
``/jobs?state=failed`` are requested through :func:`chancy.web.create_app` over
``httpx.ASGITransport``: one warm-up, then the median of :data:`REQUESTS` requests each.
"""

from __future__ import annotations

import statistics
import time

import httpx

from benchmarks.context import Context
from benchmarks.report import Result
from benchmarks.workers import VerificationError
from chancy import Chancy, Queue
from chancy.web import create_app

__all__ = ["dashboard_pages"]

QUEUES = ("emails", "reports", "imports", "webhooks")
REQUESTS = 5
TARGET_SECONDS = 1.0
PAGES = {"overview": "/", "jobs": "/jobs", "jobs failed": "/jobs?state=failed"}

# Of every 100 jobs (by the series' number): 1 pending, 1 failed, 1 cancelled, one in
# 200 running, the rest succeeded; the queue cycles through QUEUES. Finished jobs
# completed over the last day, the newest last.
BULK_JOBS = """
INSERT INTO chancy_jobs (queue, func, state, attempts, max_attempts, scheduled_at,
                         created_at, started_at, completed_at, lease_expires_at, worker_id,
                         errors, result)
SELECT ($1::text[])[1 + n % array_length($1::text[], 1)],
       'app.tasks.job_' || (n % 7),
       s.state,
       CASE WHEN s.state = 'pending' THEN 0 ELSE 1 END,
       3,
       at, at,
       CASE WHEN s.state = 'pending' THEN NULL ELSE at END,
       CASE WHEN s.state IN ('pending', 'running') THEN NULL ELSE at END,
       CASE WHEN s.state = 'running' THEN now() + interval '5 minutes' END,
       CASE WHEN s.state = 'running' THEN 'bench-d1' END,
       CASE WHEN s.state = 'failed'
            THEN '[{"attempt": 1, "error": "ValueError: no", "traceback": "..."}]'::jsonb
            ELSE '[]'::jsonb END,
       CASE WHEN s.state = 'succeeded' THEN '"ok"'::jsonb END
  FROM generate_series(1, $2::int) AS n,
       LATERAL (SELECT now() - interval '1 day' * (1 - n::float8 / $2) AS at) AS t,
       LATERAL (SELECT CASE
                  WHEN n % 200 = 7 THEN 'running'
                  WHEN n % 100 = 1 THEN 'pending'
                  WHEN n % 100 = 2 THEN 'failed'
                  WHEN n % 100 = 3 THEN 'cancelled'
                  ELSE 'succeeded' END AS state) AS s
"""


async def time_page(client: httpx.AsyncClient, path: str) -> list[float]:
    """Seconds of each of :data:`REQUESTS` requests of ``path``, after one warm-up."""
    times: list[float] = []
    for index in range(1 + REQUESTS):
        started = time.perf_counter()
        response = await client.get(path)
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise VerificationError(f"GET {path} answered {response.status_code}")
        if index:
            times.append(elapsed)
    return times


async def dashboard_pages(context: Context, result: Result) -> None:
    """D1: median time of the overview and the jobs list's first pages (all, failed)."""
    count = context.scaled(2_000_000, 20_000)
    result.target = f"each ≤ {TARGET_SECONDS:g} s"
    async with context.server.fresh_database("D1") as database:
        connection = await database.connect()
        try:
            context.say(f"D1: inserting {count:,} jobs")
            await connection.execute(BULK_JOBS, list(QUEUES), count)
            await connection.execute("VACUUM (ANALYZE) chancy_jobs")
            total = int(await connection.fetchval("SELECT count(*) FROM chancy_jobs"))
            failed = int(
                await connection.fetchval("SELECT count(*) FROM chancy_jobs WHERE state = 'failed'")
            )
        finally:
            await connection.close()
        if total != count:
            raise VerificationError(f"expected {count:,} jobs, found {total:,}")
        queues = [Queue(name=name) for name in QUEUES]
        async with Chancy(database.url, queues=queues) as chancy:
            transport = httpx.ASGITransport(app=create_app(chancy))
            base_url = "http://127.0.0.1"  # a loopback name: the dashboard has no auth here
            async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
                medians = {
                    name: statistics.median(await time_page(client, path))
                    for name, path in PAGES.items()
                }
    slowest = max(medians.values())
    result.figure, result.unit, result.ceiling = slowest, "s", TARGET_SECONDS
    result.ratio = slowest / TARGET_SECONDS
    result.met = result.ratio <= 1
    result.figure_text = " · ".join(f"{name} {1000 * s:.0f} ms" for name, s in medians.items())
    result.ceiling_text = f"{TARGET_SECONDS:g} s each"
    result.extra.update(
        jobs=count,
        failed_jobs=failed,
        requests=REQUESTS,
        **{f"median_{name.replace(' ', '_')}_s": s for name, s in medians.items()},
    )
    result.notes.append(
        f"{count:,} jobs ({failed:,} failed) in {len(QUEUES)} queues, bulk-inserted and "
        f"analyzed; through create_app over httpx.ASGITransport, median of {REQUESTS} "
        "requests after one warm-up: "
        + ", ".join(f"{PAGES[name]} {1000 * s:.0f} ms" for name, s in medians.items())
        + "; ratio = the slowest page / 1 s"
    )
