"""The leader's lease: one row, taken when free or expired, renewed by its holder; its
``term`` grows each time leadership changes hands."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from chancy.repository.base import Repository
from chancy.repository.runner import HotExecutable, Statement
from chancy.repository.tables import SECOND, leader

__all__ = ["LeaderRepository"]

_LEADER_NAME = "leader"
_WHAT = "electing the leader"


def _elect_statement() -> sa.Executable:
    """Become or stay the leader: take the lease if it is free or expired, renew it if
    it is ours. Returns the term, or no row while another worker holds a live lease."""
    insert = pg_insert(leader).values(
        name=_LEADER_NAME,
        worker_id=sa.bindparam("p_worker_id"),
        term=1,
        elected_at=sa.func.now(),
        expires_at=sa.func.now() + SECOND * sa.bindparam("p_ttl", type_=sa.Double),
    )
    ours = leader.c.worker_id == insert.excluded.worker_id
    return insert.on_conflict_do_update(
        index_elements=[leader.c.name],
        set_={
            "worker_id": insert.excluded.worker_id,
            "term": sa.case((ours, leader.c.term), else_=leader.c.term + 1),
            "elected_at": sa.case((ours, leader.c.elected_at), else_=sa.func.now()),
            "expires_at": insert.excluded.expires_at,
        },
        where=sa.or_(ours, leader.c.expires_at < sa.func.now()),
    ).returning(leader.c.term)


_ELECT = Statement(_elect_statement(), what=_WHAT)
# Resigning expires the lease but keeps the row, so the next leader's term is higher.
_RESIGN = Statement(
    sa.update(leader)
    .where(leader.c.name == _LEADER_NAME, leader.c.worker_id == sa.bindparam("p_worker_id"))
    .values(expires_at=sa.func.now() - SECOND),
    what="resigning leadership",
)


class LeaderRepository(Repository):
    """The leader's lease."""

    async def elect_or_renew(self, conn: HotExecutable, worker_id: str, ttl: float) -> int | None:
        """Take or renew the leader lease for ``ttl`` seconds; returns the term, or None
        while another worker leads."""
        parameters = {"p_worker_id": worker_id, "p_ttl": ttl}
        rows = await _ELECT.rows(conn, parameters, timeouts=self.timeouts)
        return int(rows[0]["term"]) if rows else None

    async def resign(self, conn: HotExecutable, worker_id: str) -> None:
        """Give the lease up at once, so another worker takes over without waiting."""
        await _RESIGN.rows(conn, {"p_worker_id": worker_id}, timeouts=self.timeouts)
