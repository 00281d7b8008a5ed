"""What every repository shares: the limits chancy set on the connections it is given,
which the statement runner names in the messages of timeout errors."""

from __future__ import annotations

from chancy.database.timeouts import Timeouts

__all__ = ["Repository"]


class Repository:
    """Stateless but for ``timeouts``: one instance serves every connection.

    ``timeouts``: the ``lock_timeout`` and ``statement_timeout`` chancy set on the
    connections this repository runs on (None: chancy set none; an error then speaks of
    the connection's own limit)."""

    def __init__(self, *, timeouts: Timeouts | None = None) -> None:
        self.timeouts = timeouts
