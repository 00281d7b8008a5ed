"""Peer libraries run beside chancy (``python -m benchmarks --peers``).

Each peer runs the same scenario through its own public API, on the same server in the
same run, on a fresh database with its own schema installed the way its documentation
says, and its counts are verified in the database as chancy's are. Its figure is put
beside chancy's (:class:`~benchmarks.report.PeerFigure`): against the same ceiling, and
as "chancy vs peer" (how many times better chancy did).

Peers: :mod:`benchmarks.peers.pgqueuer` (pgqueuer, installed by the ``bench`` extra).
A peer's module imports the peer library, so it is imported only when ``--peers`` is
given; :func:`missing` says what is not installed.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Awaitable, Callable

from benchmarks.report import PeerFigure, Result

__all__ = ["INSTALL_HINT", "PEER_PACKAGES", "compare", "missing"]

PEER_PACKAGES = ("pgqueuer",)
INSTALL_HINT = 'pip install -e ".[bench]"'


def missing() -> list[str]:
    """The peer libraries that cannot be imported."""
    return [name for name in PEER_PACKAGES if importlib.util.find_spec(name) is None]


async def compare(
    result: Result,
    peer: str,
    run: Callable[[PeerFigure], Awaitable[None]],
    *,
    minimum_factor: float | None = None,
) -> None:
    """Run a peer's side of a scenario (``run`` fills in the figure) and add it to
    ``result``, compared with chancy's figure and ceiling, which must be filled in
    already; ``minimum_factor`` is the target of "chancy vs peer". A failure of the
    peer's side becomes the peer figure's error."""
    figure = PeerFigure(peer=peer)
    if minimum_factor is not None:
        figure.target = f"chancy ≥ {minimum_factor:g}x"
    started = time.monotonic()
    try:
        await run(figure)
    except Exception as exc:
        figure.error = f"{type(exc).__name__}: {exc}"
    figure.seconds = time.monotonic() - started
    result.peers.append(figure)
    if figure.error is not None or figure.figure is None or result.figure is None:
        return
    lower_is_better = result.unit == "ms"
    if result.ceiling is not None and not lower_is_better:
        figure.of_ceiling = figure.figure / result.ceiling
    if lower_is_better:
        figure.chancy_vs_peer = figure.figure / result.figure
    else:
        figure.chancy_vs_peer = result.figure / figure.figure
    if minimum_factor is not None:
        figure.met = figure.chancy_vs_peer >= minimum_factor
