"""``chancy_workers``: a worker's row from its start to its clean stop, moved on by its
heartbeat, and the leader's pruning of the rows of silent workers."""

from __future__ import annotations

import os
import socket
from datetime import datetime

import sqlalchemy as sa

from chancy.app import Chancy
from chancy.models import WorkerRow
from chancy.queue import Queue
from chancy.repository import WorkerPresence, WorkerRepository
from chancy.services import Leadership, WorkerPruner
from chancy.worker import Worker
from chancy.worker.heartbeat import Heartbeat

PRESENCE = WorkerPresence(id="w-1", host="box", pid=42, queues=("default",), concurrency=3)


async def live(chancy: Chancy) -> list[str]:
    async with chancy.engine.connect() as connection:
        return [worker.id for worker in await WorkerRepository().list_live(connection)]


async def beat(chancy: Chancy, presence: WorkerPresence, ttl: float) -> None:
    async with chancy.engine.begin() as connection:
        await WorkerRepository().beat(connection, presence, ttl)


async def test_a_started_worker_has_a_row_saying_where_and_what_it_runs(chancy: Chancy) -> None:
    queues = [Queue(name="default", concurrency=2), Queue(name="other", concurrency=5)]
    async with Worker(chancy, queues=queues, worker_id="w-start") as worker:
        async with chancy.engine.connect() as connection:
            (info,) = await WorkerRepository().list_live(connection)
        assert (info.id, info.host, info.pid) == ("w-start", socket.gethostname(), os.getpid())
        assert info.queues == ("default", "other")
        assert info.concurrency == 7
        assert info.is_leader is worker.is_leader is True
        assert info.running == 0


async def test_a_cleanly_stopped_worker_leaves_no_row(chancy: Chancy) -> None:
    async with Worker(chancy, worker_id="w-stop"):
        assert await live(chancy) == ["w-stop"]
    async with chancy.engine.connect() as connection:
        assert await connection.scalar(sa.select(sa.func.count()).select_from(WorkerRow)) == 0


async def test_the_heartbeat_moves_the_row_on_and_writes_back_a_pruned_one(
    chancy: Chancy,
) -> None:
    heartbeat = Heartbeat(
        chancy.engine,
        lease_seconds=30,
        running=list,
        unwritten=list,
        lost=lambda _id: None,
        presence=PRESENCE,
    )
    await beat(chancy, PRESENCE, ttl=-1)  # expired: not live
    assert await live(chancy) == []
    await heartbeat.run_once()
    assert await live(chancy) == ["w-1"]
    async with chancy.engine.begin() as connection:
        await connection.execute(sa.delete(WorkerRow))
    await heartbeat.run_once()
    assert await live(chancy) == ["w-1"]


async def test_the_leader_prunes_expired_rows_and_keeps_live_ones(chancy: Chancy) -> None:
    await beat(chancy, PRESENCE, ttl=30)
    for number in range(3):
        silent = WorkerPresence(f"gone-{number}", "box", number, ("default",), 1)
        await beat(chancy, silent, ttl=-1)
    pruner = WorkerPruner(chancy.engine, Leadership(chancy.engine, "test"), batch=2)
    assert await pruner.run_once() == 3
    async with chancy.engine.connect() as connection:
        assert (await connection.scalars(sa.select(WorkerRow.id))).all() == ["w-1"]


async def test_a_process_that_took_the_id_over_keeps_its_row_when_the_first_stops(
    chancy: Chancy,
) -> None:
    first = PRESENCE
    second = WorkerPresence(id=first.id, host="other-box", pid=7, queues=("b",), concurrency=1)
    await beat(chancy, first, 60)
    await beat(chancy, second, 60)
    async with chancy.engine.begin() as connection:
        await WorkerRepository().delete(connection, first)  # the first's clean stop
        (info,) = await WorkerRepository().list_live(connection)
    assert (info.host, info.pid, info.queues, info.concurrency) == ("other-box", 7, ("b",), 1)
    async with chancy.engine.begin() as connection:
        await WorkerRepository().delete(connection, second)
    assert await live(chancy) == []


async def test_a_takeover_restarts_the_row_and_a_beat_of_the_same_process_does_not(
    chancy: Chancy,
) -> None:
    async def started() -> datetime:
        async with chancy.engine.connect() as connection:
            moment = await connection.scalar(sa.select(WorkerRow.started_at))
            assert isinstance(moment, datetime)
            return moment

    await beat(chancy, PRESENCE, 60)
    async with chancy.engine.begin() as connection:  # started an hour ago
        await connection.execute(
            sa.update(WorkerRow).values(started_at=sa.text("now() - interval '1 hour'"))
        )
    moved = await started()
    await beat(chancy, PRESENCE, 60)
    assert await started() == moved  # the same process beating again
    await beat(chancy, WorkerPresence("w-1", "box", 43, ("default",), 3), 60)
    assert await started() > moved  # another pid took the id over
