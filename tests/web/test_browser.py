"""The dashboard end to end in a real browser: Playwright driving Debian's Chromium.

Skipped, saying why, where Chromium (``/usr/bin/chromium``) or Playwright is missing;
under CI (``CI=true``) that fails instead. Screenshots of each page are written to
``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request

from chancy.app import Chancy
from chancy.executor import Job
from chancy.queue import Queue
from chancy.web import create_app
from chancy.worker import Worker
from tests.support import tasks

CHROMIUM = os.environ.get("CHANCY_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
TIMEOUT_MS = 20_000
RUN_MS = 60_000


def _missing() -> str | None:
    if shutil.which(CHROMIUM) is None:
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install playwright)"
    return None


MISSING = _missing()
if MISSING is not None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"the browser tests must run in CI: {MISSING}", pytrace=False)
    pytest.skip(MISSING, allow_module_level=True)

from playwright.async_api import Page, async_playwright, expect  # noqa: E402


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def access(request: Request) -> str:
    """Read-only for the browser context that says so, everything for the other."""
    return "read_only" if request.headers.get("x-read-only") else "all"


@pytest.fixture
async def dashboard(chancy: Chancy) -> AsyncIterator[str]:
    import uvicorn

    port = free_port()
    app = create_app(chancy, access=access, debounce=0.1)  # type: ignore[arg-type]
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1
        )
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield chromium
        finally:
            await chromium.close()


async def shot(page: Page, name: str) -> None:
    await page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)


@pytest.mark.timeout(120)
async def test_a_failed_job_is_found_retried_and_seen_succeeding_without_a_reload(
    chancy: Chancy, dashboard: str, browser: Any
) -> None:
    queues = [Queue(name="default", concurrency=2), Queue(name="other", concurrency=2)]
    flaky = Job.from_func(tasks.fail_until, kwargs={"attempt": 2})
    async with Worker(chancy, queues=queues):
        failing = await chancy.push("default", flaky)
        assert (await chancy.wait_for_job(failing, timeout=30)).state == "failed"
        await chancy.push_many("default", [Job.from_func(tasks.greet, kwargs={"name": "x"})] * 3)
        page = await (await browser.new_context(viewport={"width": 1280, "height": 800})).new_page()
        page.set_default_timeout(TIMEOUT_MS)

        await page.goto(f"{dashboard}/")
        await expect(page.locator("h1")).to_have_text("Overview")
        await expect(page.locator("#live-dot.on")).to_be_visible()
        await shot(page, "overview")

        await page.goto(f"{dashboard}/jobs?state=failed")
        await shot(page, "jobs-failed")
        await page.click(f'a[href="/jobs/{failing.id}"] >> nth=0')
        await expect(page.locator(".traceback")).to_contain_text("attempt 1 fails")
        await expect(page.locator("#job-state")).to_have_text("failed")
        await shot(page, "job-failed")

        # Paused, the retried job waits, so the page is seen to change when it runs.
        await chancy.pause_queue("default")
        await page.click("button.retry")
        await expect(page.locator(".notice")).to_have_text("retried")
        await expect(page.locator("#job-state")).to_have_text("pending")
        await page.evaluate("window.notReloaded = true")
        # The page must hear of the change: its event stream is open before the job runs.
        await expect(page.locator("#live-dot.on")).to_be_visible()
        await chancy.resume_queue("default")
        # A worker runs the job meanwhile: under load that takes longer than a page.
        await expect(page.locator("#job-state")).to_have_text("succeeded", timeout=RUN_MS)
        assert await page.evaluate("window.notReloaded === true")
        await expect(page.locator("button.retry")).to_have_count(0)
        await shot(page, "job-succeeded")

        await page.goto(f"{dashboard}/queues")
        await page.click("#queue-other button.pause")
        await expect(page.locator("#queue-other .badge")).to_have_text("paused")
        await shot(page, "queues-paused")
        waiting = await chancy.push("other", Job.from_func(tasks.greet, kwargs={"name": "w"}))
        after = await chancy.push("default", Job.from_func(tasks.greet, kwargs={"name": "a"}))
        assert (await chancy.wait_for_job(after, timeout=30)).state == "succeeded"
        assert (await chancy.get_job(waiting)).state == "pending"  # type: ignore[union-attr]
        await page.click("#queue-other button.resume")
        await expect(page.locator("#queue-other .badge")).to_have_text("active")
        assert (await chancy.wait_for_job(waiting, timeout=30)).state == "succeeded"

        await page.goto(f"{dashboard}/workers")
        await expect(page.locator(".badge.leader")).to_have_count(1)
        await shot(page, "workers")
        await page.goto(f"{dashboard}/schedules")
        await shot(page, "schedules")
        await page.goto(f"{dashboard}/jobs")
        await shot(page, "jobs")


@pytest.mark.timeout(60)
async def test_a_read_only_session_sees_no_action_button(
    chancy: Chancy, dashboard: str, browser: Any
) -> None:
    failing = await chancy.push("default", Job.from_func(tasks.fail, kwargs={"message": "no"}))
    await chancy.cancel_job(failing)
    await chancy.declare("default")
    context = await browser.new_context(extra_http_headers={"x-read-only": "1"})
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    await page.goto(f"{dashboard}/jobs/{failing.id}")
    await expect(page.locator("#job-state")).to_have_text("cancelled")
    await expect(page.locator(".mode")).to_contain_text("read-only")
    await expect(page.locator("main button")).to_have_count(0)
    await shot(page, "job-read-only")
    await page.goto(f"{dashboard}/queues")
    await expect(page.locator("button")).to_have_count(0)
    await page.goto(f"{dashboard}/jobs")
    await expect(page.locator("button")).to_have_count(1)  # Filter, no bulk action
