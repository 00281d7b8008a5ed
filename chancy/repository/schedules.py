"""Cron schedules: stored (and the undeclared ones deleted) when a worker starts, advanced
tick by tick by the leader."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert

from chancy.repository.base import Repository
from chancy.repository.runner import HotExecutable, Statement
from chancy.repository.tables import schedules

if TYPE_CHECKING:
    from chancy.cron import Cron

__all__ = ["ScheduleRepository"]

_TIMESTAMP = sa.DateTime(timezone=True)
_STORING = "storing the schedules"
_PUSHING = "pushing scheduled jobs"
# pg_advisory_xact_lock key: the bytes of "chancy_s" read as a signed 64-bit integer.
_STORE_LOCK_KEY = int.from_bytes(b"chancy_s", "big", signed=True)


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


_UPSERT = Statement(_upsert_statement(), what=_STORING)
# Workers that start together store one after the other: two versions of an app (a
# rolling deploy), each upserting its schedules and deleting the other's, would otherwise
# lock the same rows in opposite orders and deadlock.
_TAKE_STORE_TURN = Statement(
    sa.select(sa.func.pg_advisory_xact_lock(_STORE_LOCK_KEY)), what=_STORING
)
_DELETE_EXCEPT = Statement(
    sa.delete(schedules)
    .where(schedules.c.name != sa.func.all(sa.bindparam("p_names", type_=ARRAY(sa.Text))))
    .returning(schedules.c.name),
    what=_STORING,
)
# Read without locks: each due schedule is then locked and pushed in a transaction of its
# own (LOCK_DUE), so that one that fails cannot hold the others back.
_LIST_DUE = Statement(
    sa.select(schedules.c.name, schedules.c.updated_at)
    .where(schedules.c.next_run_at <= sa.bindparam("p_now", type_=_TIMESTAMP))
    .order_by(schedules.c.next_run_at, schedules.c.name),
    what=_PUSHING,
)
# Locked until the transaction ends; a schedule another leader holds is skipped, and one
# another leader has just advanced is no longer due.
_LOCK_DUE = Statement(
    sa.select(*schedules.c)
    .where(
        schedules.c.name == sa.bindparam("p_name"),
        schedules.c.next_run_at <= sa.bindparam("p_now", type_=_TIMESTAMP),
    )
    .with_for_update(skip_locked=True),
    what=_PUSHING,
)
_ADVANCE = Statement(
    sa.update(schedules)
    .where(schedules.c.name == sa.bindparam("p_name"))
    .values(
        last_run_at=sa.bindparam("p_tick", type_=_TIMESTAMP),
        next_run_at=sa.bindparam("p_next_run_at", type_=_TIMESTAMP),
        updated_at=sa.func.now(),
    ),
    what=_PUSHING,
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

    async def take_store_turn(self, conn: HotExecutable) -> None:
        """Wait until no other transaction is storing schedules; the turn lasts until
        this transaction ends."""
        await _TAKE_STORE_TURN.rows(conn, {}, timeouts=self.timeouts)

    async def delete_except(self, conn: HotExecutable, names: Sequence[str]) -> list[str]:
        """Delete the schedules not named in ``names`` (all of them if it is empty);
        returns the names of the deleted ones."""
        rows = await _DELETE_EXCEPT.rows(conn, {"p_names": list(names)}, timeouts=self.timeouts)
        return sorted(row["name"] for row in rows)

    async def list_due(self, conn: HotExecutable, now: datetime) -> list[tuple[str, datetime]]:
        """The name and ``updated_at`` of the schedules due at ``now``, the most overdue
        first (not locked)."""
        rows = await _LIST_DUE.rows(conn, {"p_now": now}, timeouts=self.timeouts)
        return [(row["name"], row["updated_at"]) for row in rows]

    async def lock_due(self, conn: HotExecutable, name: str, now: datetime) -> Any | None:
        """Schedule ``name``, locked until the transaction ends, if it is due at ``now``
        and no one else holds it; else None."""
        rows = await _LOCK_DUE.rows(conn, {"p_name": name, "p_now": now}, timeouts=self.timeouts)
        return rows[0] if rows else None

    async def advance(
        self, conn: HotExecutable, name: str, tick: datetime, following: datetime
    ) -> None:
        """Record that ``tick`` of schedule ``name`` was handled; its next is ``following``."""
        parameters = {"p_name": name, "p_tick": tick, "p_next_run_at": following}
        await _ADVANCE.rows(conn, parameters, timeouts=self.timeouts)
