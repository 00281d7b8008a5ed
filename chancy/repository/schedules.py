"""Cron schedules: stored when a worker starts, advanced tick by tick by the leader."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert

from chancy.repository.base import Repository
from chancy.repository.runner import HotExecutable, Statement
from chancy.repository.tables import schedules

if TYPE_CHECKING:
    from chancy.cron import Cron

__all__ = ["ScheduleRepository"]

_TIMESTAMP = sa.DateTime(timezone=True)


def _upsert_statement() -> sa.Executable:
    """Store a schedule; its stored next tick stands unless its expression or time zone
    changed (then ``:next_run_at``, the first tick from now)."""
    insert = pg_insert(schedules).values(
        name=sa.bindparam("p_name"),
        cron=sa.bindparam("p_cron"),
        timezone=sa.bindparam("p_timezone"),
        job=sa.bindparam("p_job", type_=JSONB),
        catch_up=sa.bindparam("p_catch_up"),
        next_run_at=sa.bindparam("p_next_run_at", type_=_TIMESTAMP),
    )
    moved = sa.or_(
        schedules.c.cron != insert.excluded.cron,
        schedules.c.timezone != insert.excluded.timezone,
    )
    return insert.on_conflict_do_update(
        index_elements=[schedules.c.name],
        set_={
            "cron": insert.excluded.cron,
            "timezone": insert.excluded.timezone,
            "job": insert.excluded.job,
            "catch_up": insert.excluded.catch_up,
            "next_run_at": sa.case(
                (moved, insert.excluded.next_run_at), else_=schedules.c.next_run_at
            ),
            "updated_at": sa.func.now(),
        },
    )


_UPSERT = Statement(_upsert_statement(), what="storing the schedules")
# Locked until the transaction ends; a schedule another leader holds is skipped.
_LOCK_DUE = Statement(
    sa.select(*schedules.c)
    .where(schedules.c.next_run_at <= sa.bindparam("p_now", type_=_TIMESTAMP))
    .order_by(schedules.c.next_run_at)
    .with_for_update(skip_locked=True),
    what="pushing scheduled jobs",
)
_ADVANCE = Statement(
    sa.update(schedules)
    .where(schedules.c.name == sa.bindparam("p_name"))
    .values(
        last_run_at=sa.bindparam("p_tick", type_=_TIMESTAMP),
        next_run_at=sa.bindparam("p_next_run_at", type_=_TIMESTAMP),
        updated_at=sa.func.now(),
    ),
    what="pushing scheduled jobs",
)


class ScheduleRepository(Repository):
    """The stored cron schedules."""

    async def upsert(self, conn: HotExecutable, cron: Cron, first: datetime) -> None:
        """Store ``cron``; ``first`` is its next tick if it is new or its expression or
        time zone changed (else its stored next tick stands)."""
        parameters = {
            "p_name": cron.name,
            "p_cron": cron.expression,
            "p_timezone": cron.timezone,
            "p_job": cron.job_fields(),
            "p_catch_up": cron.catch_up,
            "p_next_run_at": first,
        }
        await _UPSERT.rows(conn, parameters, timeouts=self.timeouts)

    async def lock_due_many(self, conn: HotExecutable, now: datetime) -> list[Any]:
        """The schedules due at ``now``, locked until the transaction ends (a schedule
        someone else holds is skipped)."""
        return list(await _LOCK_DUE.rows(conn, {"p_now": now}, timeouts=self.timeouts))

    async def advance(
        self, conn: HotExecutable, name: str, tick: datetime, following: datetime
    ) -> None:
        """Record that ``tick`` of schedule ``name`` was handled; its next is ``following``."""
        parameters = {"p_name": name, "p_tick": tick, "p_next_run_at": following}
        await _ADVANCE.rows(conn, parameters, timeouts=self.timeouts)
