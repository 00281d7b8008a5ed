"""Embedding chancy in an application: examples/alembic_app and examples/fastapi_app.

The shop of ``examples/alembic_app`` has its own models and Alembic history; its
``env.py`` runs chancy's history beside its own (``chancy.alembic``). These tests run the
shop's ``alembic`` command in a subprocess, as its developers would, on a real PostgreSQL.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import context, op
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.operations import Operations
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.pool import NullPool

from chancy import alembic as chancy_alembic
from chancy import migrations
from chancy.app import Chancy
from chancy.cli import load_app
from chancy.database import create_engine
from chancy.models import JobRow
from chancy.models import metadata as chancy_metadata
from chancy.sync import push
from examples.alembic_app import app as shop
from examples.alembic_app.models import Order, metadata
from examples.alembic_app.tasks import receipt_job, send_receipt
from tests.support.schema import reflect

ROOT = Path(__file__).resolve().parents[2]
SHOP_DIR = ROOT / "examples" / "alembic_app"
SHOP_TABLES = {"orders", "alembic_version"}
# The `chancy` command as its console script runs it.
CHANCY_COMMAND = (sys.executable, "-c", "from chancy.cli import main; main()")


def dsn_of(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def subprocess_env(url: URL) -> dict[str, str]:
    python_path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "APP_DSN": dsn_of(url), "PYTHONPATH": python_path}


def shop_alembic(url: URL, *args: str) -> subprocess.CompletedProcess[str]:
    """The shop's `alembic` command, run in the shop's folder."""
    return subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=SHOP_DIR,
        env=subprocess_env(url),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


async def run_shop_alembic(url: URL, *args: str) -> str:
    done = await asyncio.to_thread(shop_alembic, url, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


async def version_rows(url: URL) -> dict[str, list[str]]:
    """The revisions recorded in the shop's and chancy's version tables."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            return {
                table: list(await connection.scalars(sa.text(f"SELECT version_num FROM {table}")))
                for table in ("alembic_version", migrations.VERSION_TABLE)
            }
    finally:
        await engine.dispose()


async def chancy_revision(url: URL) -> str | None:
    engine = create_engine(url, poolclass=NullPool)
    try:
        return await migrations.current(engine)
    finally:
        await engine.dispose()


# The shop's Alembic environment


async def test_shop_upgrade_head_builds_its_tables_and_chancys_in_one_database(
    database_url: URL, empty_database_url: URL
) -> None:
    await run_shop_alembic(empty_database_url, "upgrade", "head")

    schema = await reflect(empty_database_url)
    assert schema.keys() >= SHOP_TABLES
    chancys = {name: table for name, table in schema.items() if name not in SHOP_TABLES}
    assert chancys == await reflect(database_url)  # as chancy.migrations.upgrade makes it
    assert await version_rows(empty_database_url) == {
        "alembic_version": ["0001"],
        migrations.VERSION_TABLE: [migrations.head()],
    }


async def test_shop_check_sees_no_change_in_chancys_tables(empty_database_url: URL) -> None:
    await run_shop_alembic(empty_database_url, "upgrade", "head")
    output = await run_shop_alembic(empty_database_url, "check")
    assert "No new upgrade operations detected" in output


async def test_without_exclude_chancy_autogenerate_would_drop_chancys_tables(
    database_url: URL,
) -> None:
    def diffs(connection: Connection, hook: Any) -> set[tuple[str, str]]:
        context = MigrationContext.configure(connection, opts={"include_name": hook})
        return {(diff[0], diff[1].name) for diff in compare_metadata(context, metadata)}

    engine = create_engine(database_url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            unfiltered = await connection.run_sync(diffs, None)
            filtered = await connection.run_sync(diffs, chancy_alembic.exclude_chancy)
    finally:
        await engine.dispose()
    removed = {*(t.name for t in chancy_metadata.sorted_tables), migrations.VERSION_TABLE}
    assert {name for kind, name in unfiltered if kind == "remove_table"} == removed
    # What is left is the shop's own model, not yet created in this database.
    assert filtered == {("add_table", "orders"), ("add_index", "ix_orders_email")}


def test_exclude_chancy_keeps_every_table_but_chancys() -> None:
    assert chancy_alembic.exclude_chancy("orders", "table", {})
    assert chancy_alembic.exclude_chancy("public", "schema", {})
    assert not chancy_alembic.exclude_chancy("chancy_jobs", "table", {})
    assert not chancy_alembic.exclude_chancy(migrations.VERSION_TABLE, "table", {})


async def test_shop_downgrade_base_removes_its_tables_and_keeps_chancys(
    database_url: URL, empty_database_url: URL
) -> None:
    await run_shop_alembic(empty_database_url, "upgrade", "head")
    await run_shop_alembic(empty_database_url, "downgrade", "base")

    schema = await reflect(empty_database_url)
    assert "orders" not in schema
    del schema["alembic_version"]  # Alembic keeps its version table, empty
    assert schema == await reflect(database_url)
    assert await version_rows(empty_database_url) == {
        "alembic_version": [],
        migrations.VERSION_TABLE: [migrations.head()],
    }


async def test_read_only_commands_leave_chancy_alone_and_upgrade_catches_it_up(
    empty_database_url: URL,
) -> None:
    await run_shop_alembic(empty_database_url, "upgrade", "head")
    engine = create_engine(empty_database_url, poolclass=NullPool)
    try:
        await migrations.downgrade(engine, "base")  # as if chancy had a newer revision
    finally:
        await engine.dispose()

    await run_shop_alembic(empty_database_url, "current")
    await run_shop_alembic(empty_database_url, "check")
    assert await chancy_revision(empty_database_url) is None

    # The shop has nothing to upgrade; chancy's history is still brought up to head.
    await run_shop_alembic(empty_database_url, "upgrade", "head")
    assert await chancy_revision(empty_database_url) == migrations.head()


async def test_chancy_upgrade_inside_a_running_environment_keeps_it_running(
    empty_database_url: URL,
) -> None:
    """As in the shop's env.py, or in one of its revisions: the application's `context`
    and `op` still work after chancy's migrations ran, and Alembic exits cleanly."""

    def migrate_inside_the_shops_environment(connection: Connection) -> None:
        config = Config(str(SHOP_DIR / "alembic.ini"))
        script = ScriptDirectory.from_config(config)
        with EnvironmentContext(config, script, destination_rev="head"):
            context.configure(connection=connection, target_metadata=metadata)
            shops = context.get_context()
            with context.begin_transaction(), Operations.context(shops):
                chancy_alembic.upgrade(connection)
                assert context.get_context() is shops
                op.create_table("notes", sa.Column("id", sa.Integer, primary_key=True))

    engine = create_engine(empty_database_url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(migrate_inside_the_shops_environment)
            await connection.commit()
        assert await migrations.current(engine) == migrations.head()
    finally:
        await engine.dispose()
    assert "notes" in await reflect(empty_database_url)


@pytest.mark.parametrize(
    ("command_options", "migrates"),
    [({"destination_rev": "head"}, True), ({}, False)],
    ids=["upgrade", "check"],
)
def test_command_migrates_only_for_commands_that_move_to_a_revision(
    command_options: dict[str, Any], migrates: bool
) -> None:
    config = Config(str(SHOP_DIR / "alembic.ini"))
    script = ScriptDirectory.from_config(config)
    with EnvironmentContext(config, script, as_sql=True, **command_options):
        context.configure(url="postgresql://")
        assert chancy_alembic.command_migrates() is migrates


# The shop's code: an order and its receipt job in one transaction


@pytest.fixture
async def shop_url(database_url: URL) -> URL:
    """chancy's schema and the shop's tables, in a database of the test's own."""
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
    finally:
        await engine.dispose()
    return database_url


@pytest.fixture
def shop_engine(shop_url: URL, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """The shop's own (synchronous, psycopg) engine, configured from APP_DSN."""
    monkeypatch.setenv(shop.DSN_ENV, dsn_of(shop_url))
    engine = shop.make_engine()
    yield engine
    engine.dispose()


async def test_an_order_and_its_receipt_job_commit_together(shop_engine: Engine) -> None:
    def place() -> int:
        with Session(shop_engine) as session, session.begin():
            return shop.place_order(session, "alice@example.com", Decimal("42.50")).id

    def jobs_of(order_id: int) -> list[tuple[Any, ...]]:
        with Session(shop_engine) as session:
            order = session.get_one(Order, order_id)
            return [(job.func, job.queue, job.kwargs, job.meta, job.state) for job in order.jobs]

    order_id = await asyncio.to_thread(place)
    assert await asyncio.to_thread(jobs_of, order_id) == [
        (
            "examples.alembic_app.tasks.send_receipt",
            "receipts",
            {"order_id": order_id},
            {"order_id": order_id},
            "pending",
        )
    ]


async def test_a_rolled_back_order_leaves_no_job(shop_engine: Engine) -> None:
    class PaymentDeclinedError(Exception):
        pass

    def place_then_fail() -> None:
        with Session(shop_engine) as session, session.begin():
            shop.place_order(session, "bob@example.com", Decimal("10.00"))
            raise PaymentDeclinedError

    def count(table: type[Any]) -> int:
        with Session(shop_engine) as session:
            return session.scalar(sa.select(sa.func.count()).select_from(table)) or 0

    with pytest.raises(PaymentDeclinedError):
        await asyncio.to_thread(place_then_fail)
    assert await asyncio.to_thread(count, Order) == 0
    assert await asyncio.to_thread(count, JobRow) == 0


async def test_order_jobs_are_exactly_the_jobs_pushed_for_that_order(
    shop_engine: Engine,
) -> None:
    def place_orders_and_jobs() -> tuple[int, int]:
        with Session(shop_engine) as session, session.begin():
            first = shop.place_order(session, "alice@example.com", Decimal("1.00"))
            second = shop.place_order(session, "bob@example.com", Decimal("2.00"))
            push(session, receipt_job(first.id).with_unique_key(None))  # a second job
            # Jobs that belong to no order: other meta, or none at all.
            push(session, receipt_job(first.id).with_unique_key(None).with_meta({}))
            push(session, receipt_job(first.id).with_unique_key(None).with_meta({"order_id": "x"}))
            return first.id, second.id

    def jobs_by_order() -> dict[int, list[dict[str, Any]]]:
        with Session(shop_engine) as session:
            orders = session.scalars(sa.select(Order).options(selectinload(Order.jobs)))
            return {order.id: [job.meta for job in order.jobs] for order in orders}

    def orders_with_pending_jobs() -> list[int]:
        with Session(shop_engine) as session:
            query = sa.select(Order.id).join(Order.jobs).where(JobRow.state == "pending")
            return sorted(set(session.scalars(query)))

    first, second = await asyncio.to_thread(place_orders_and_jobs)
    assert await asyncio.to_thread(jobs_by_order) == {
        first: [{"order_id": first}, {"order_id": first}],
        second: [{"order_id": second}],
    }
    assert await asyncio.to_thread(orders_with_pending_jobs) == [first, second]


def test_receipt_job_runs_send_receipt() -> None:
    job = receipt_job(7)
    assert job.func == "examples.alembic_app.tasks.send_receipt"
    assert send_receipt(**job.kwargs) == "receipt for order 7 sent"


# The shop's web API: FastAPI on the shop's engine


@pytest.fixture
def web(shop_url: URL, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The FastAPI example's module, configured for the test's database."""
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from examples.fastapi_app import main

    monkeypatch.setenv("APP_DSN", dsn_of(shop_url))
    return main


async def post_order(web: ModuleType, email: str) -> dict[str, Any]:
    import httpx

    transport = httpx.ASGITransport(app=web.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
        response = await client.post("/orders", json={"email": email, "total": "42.50"})
    assert response.status_code == 201, response.text
    placed: dict[str, Any] = response.json()
    return placed


async def test_web_order_pushes_a_job_that_the_lifespans_worker_runs(
    web: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUN_WORKER", "1")
    async with web.lifespan(web.app):
        placed = await post_order(web, "alice@example.com")
        jobs: Chancy = web.app.state.chancy
        job = await jobs.wait_for_job(placed["receipt_job_id"], timeout=30)
    assert job.state == "succeeded"
    assert job.result == f"receipt for order {placed['id']} sent"
    assert job.meta == {"order_id": placed["id"]}


async def test_web_rejects_a_bad_order_and_pushes_nothing(web: ModuleType, shop_url: URL) -> None:
    import httpx

    async with web.lifespan(web.app):
        transport = httpx.ASGITransport(app=web.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
            response = await client.post("/orders", json={"email": "x@example.com", "total": -1})
    assert response.status_code == 422
    engine = create_engine(shop_url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            assert await connection.scalar(sa.select(sa.func.count()).select_from(JobRow)) == 0
    finally:
        await engine.dispose()


def start_worker_command(url: URL) -> subprocess.Popen[bytes]:
    """`chancy worker --app examples.fastapi_app.main:chancy`, from the repository root."""
    return subprocess.Popen(
        [*CHANCY_COMMAND, "worker", "--app", "examples.fastapi_app.main:chancy"],
        cwd=ROOT,
        env=subprocess_env(url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def stop(process: subprocess.Popen[bytes]) -> str:
    """Stop a worker as a service manager would (SIGTERM, then SIGKILL); its stderr."""
    process.send_signal(signal.SIGTERM)
    try:
        _, stderr = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
    return stderr.decode()


async def test_worker_command_runs_the_web_apps_jobs_with_its_engine_settings(
    web: ModuleType, shop_url: URL
) -> None:
    worker_app = load_app("examples.fastapi_app.main:chancy")
    assert [queue.name for queue in worker_app.queues] == ["receipts"]
    async with worker_app:
        assert worker_app.engine.pool.size() == web.ENGINE_OPTIONS["pool_size"]  # type: ignore[attr-defined]

    async with web.lifespan(web.app):  # no RUN_WORKER: the web process runs no job
        placed = await post_order(web, "alice@example.com")
    worker = await asyncio.to_thread(start_worker_command, shop_url)
    try:
        async with Chancy(shop_url) as chancy:
            job = await chancy.wait_for_job(placed["receipt_job_id"], timeout=30)
        assert job.state == "succeeded"
    finally:
        stderr = await asyncio.to_thread(stop, worker)
    assert worker.returncode == 0, stderr


# The dashboard, mounted at /chancy behind the shop's staff login

STAFF_PASSWORDS = {"admin": "admin-pw", "viewer": "viewer-pw"}
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin", "Origin": "http://shop"}


def basic(user: str, password: str) -> dict[str, str]:
    credentials = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {credentials}"}


async def receipts_paused(web: ModuleType) -> bool:
    jobs: Chancy = web.app.state.chancy
    return {queue.name: queue.paused for queue in await jobs.list_queues()}["receipts"]


@pytest.fixture
async def shop_client(web: ModuleType, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    """A client of the running shop app, whose staff passwords are set, with one order
    placed (with no login: the shop's API is not the dashboard), which declared the
    receipts queue."""
    import httpx

    for user, password in STAFF_PASSWORDS.items():
        monkeypatch.setenv(web.STAFF[user][0], password)
    async with web.lifespan(web.app):
        transport = httpx.ASGITransport(app=web.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
            placed = await client.post(
                "/orders", json={"email": "alice@example.com", "total": "42.50"}
            )
            assert placed.status_code == 201, placed.text
            yield client


@pytest.mark.parametrize(
    "headers",
    [{}, basic("admin", "wrong"), basic("nobody", "admin-pw"), {"Authorization": "Basic !!"}],
    ids=["no-credentials", "wrong-password", "unknown-user", "malformed"],
)
async def test_the_dashboard_asks_for_a_staff_login(shop_client: Any, headers: Any) -> None:
    response = await shop_client.get("/chancy/", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Basic ")
    assert "Overview" not in response.text
    refused = await shop_client.post("/chancy/queues/receipts/pause", headers=SAME_ORIGIN)
    assert refused.status_code == 401


async def test_a_staff_member_whose_password_is_unset_cannot_log_in(
    shop_client: Any, web: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(web.STAFF["viewer"][0])
    response = await shop_client.get("/chancy/", headers=basic("viewer", ""))
    assert response.status_code == 401


async def test_the_admin_sees_the_overview_and_pauses_a_queue(
    shop_client: Any, web: ModuleType
) -> None:
    admin = basic("admin", STAFF_PASSWORDS["admin"])
    overview = await shop_client.get("/chancy/", headers=admin)
    assert overview.status_code == 200
    assert "<h1>Overview</h1>" in overview.text
    assert 'href="/chancy/jobs?queue=receipts&amp;state=pending">1</a>' in overview.text
    assert 'href="/chancy/jobs' in overview.text  # links under the mount point

    paused = await shop_client.post(
        "/chancy/queues/receipts/pause", headers={**admin, **SAME_ORIGIN}
    )
    assert paused.status_code == 303
    assert paused.headers["location"].startswith("/chancy/queues?")
    assert await receipts_paused(web)

    queues = await shop_client.get("/chancy/queues", headers=admin)
    assert 'action="/chancy/queues/receipts/resume"' in queues.text


async def test_the_viewer_sees_the_dashboard_but_may_not_act(
    shop_client: Any, web: ModuleType
) -> None:
    viewer = basic("viewer", STAFF_PASSWORDS["viewer"])
    queues = await shop_client.get("/chancy/queues", headers=viewer)
    assert queues.status_code == 200
    assert "<h1>Queues</h1>" in queues.text
    assert "<form" not in queues.text
    refused = await shop_client.post(
        "/chancy/queues/receipts/pause", headers={**viewer, **SAME_ORIGIN}
    )
    assert refused.status_code == 403
    assert not await receipts_paused(web)


async def test_the_admins_cross_site_post_is_refused(shop_client: Any, web: ModuleType) -> None:
    admin = basic("admin", STAFF_PASSWORDS["admin"])
    refused = await shop_client.post(
        "/chancy/queues/receipts/pause",
        headers={**admin, "Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
    )
    assert refused.status_code == 403
    assert not await receipts_paused(web)


# Every example shows the functions its workers may run (allowed=), as an app should


async def test_the_web_apps_worker_runs_only_the_shops_tasks(web: ModuleType) -> None:
    async with web.lifespan(web.app):
        jobs: Chancy = web.app.state.chancy
        assert not jobs.allowed.unrestricted
        assert jobs.allowed.allows(receipt_job(1).func)
        assert not jobs.allowed.allows("os.system")


def test_the_worker_command_app_runs_only_the_shops_tasks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("fastapi")
    monkeypatch.setenv("APP_DSN", "postgresql://shop@localhost/shop")
    worker_app = load_app("examples.fastapi_app.main:chancy")
    assert not worker_app.allowed.unrestricted
    assert worker_app.allowed.allows(receipt_job(1).func)
    assert not worker_app.allowed.allows("os.system")


def test_every_worker_command_in_the_examples_restricts_what_it_runs() -> None:
    """A `chancy worker` line in an example's instructions gives --allow, or an --app whose
    Chancy has allowed= (tested above)."""
    commands = [
        line.strip()
        for path in sorted((ROOT / "examples").rglob("*.py"))
        for line in path.read_text().splitlines()
        if "chancy worker" in line
    ]
    assert commands
    for command in commands:
        assert "--allow" in command or "--app examples.fastapi_app.main:chancy" in command, command
