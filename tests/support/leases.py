"""A watch, from a thread of its own, on whether the lease of a running job ever lapses:
the thread keeps watching while the worker's event loop is blocked (a coroutine that
never yields, a slow import)."""

from __future__ import annotations

import threading

import sqlalchemy as sa
from sqlalchemy.engine import URL

from chancy.models import JobRow
from chancy.states import JobState

__all__ = ["LeaseWatch"]


class LeaseWatch:
    """Records in :attr:`lapsed` the id of every running job (of ``worker_id``, or the
    job ``job_id``) seen with its lease expired, every 50 ms until the block ends."""

    def __init__(self, url: URL, *, worker_id: str | None = None, job_id: int | None = None):
        if (worker_id is None) == (job_id is None):
            raise TypeError("LeaseWatch watches the jobs of a worker_id or one job_id")
        self._engine = sa.create_engine(url.set(drivername="postgresql+psycopg"))
        self._query = sa.select(JobRow.id).where(
            JobRow.state == JobState.RUNNING.value,
            JobRow.lease_expires_at < sa.func.clock_timestamp(),
            JobRow.worker_id == worker_id if worker_id is not None else JobRow.id == job_id,
        )
        self._done = threading.Event()
        self.lapsed: set[int] = set()
        self._thread = threading.Thread(target=self._watch, name="lease-watch")

    def __enter__(self) -> LeaseWatch:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=10)
        self._engine.dispose()

    def _watch(self) -> None:
        with self._engine.connect() as connection:
            while not self._done.wait(0.05):
                self.lapsed.update(connection.scalars(self._query))
                connection.rollback()
