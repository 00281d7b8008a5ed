"""What a scenario reports, and how the run prints it: a rich table, a markdown table
(``--markdown``, for the README) and JSON lines."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

__all__ = ["PeerFigure", "Result", "fmt_rate", "json_line", "markdown_table", "print_table"]


@dataclasses.dataclass(slots=True)
class PeerFigure:
    """The same scenario run on a peer library (``--peers``), beside chancy's figure.

    ``figure`` is in the scenario's unit; ``of_ceiling`` is the peer's figure against the
    same run's ceiling (throughput scenarios only); ``chancy_vs_peer`` says how many times
    better chancy did: chancy / peer for a throughput, peer / chancy for a latency (above
    1: chancy ahead). ``target`` is the issue's target for that comparison (``chancy ≥
    2x``), ``met`` whether it was reached.
    """

    peer: str
    figure: float | None = None
    figure_text: str = ""
    of_ceiling: float | None = None
    chancy_vs_peer: float | None = None
    target: str = ""
    met: bool | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        """The JSON object of this figure (numbers rounded for reading)."""
        return {
            "peer": self.peer,
            "figure": _round(self.figure),
            "of_ceiling": _round(self.of_ceiling),
            "chancy_vs_peer": _round(self.chancy_vs_peer),
            "target": self.target,
            "met": self.met,
            **{key: _round(value) for key, value in self.extra.items()},
            "seconds": round(self.seconds, 1),
            "error": self.error,
        }


@dataclasses.dataclass(slots=True)
class Result:
    """One scenario's outcome.

    ``figure`` (in ``unit``) is the headline number; ``ceiling`` is what it is compared
    with (same unit), ``ratio`` the comparison the ``target`` is about, and ``met``
    whether it was reached (None: not judged). ``figure_text`` and ``ceiling_text`` are
    the table's cells; ``extra`` goes into the JSON line; ``notes`` are printed under the
    table. ``error`` is set when the scenario did not run to the end or its counts did
    not verify. ``peers`` holds the same scenario's figures on peer libraries
    (``--peers``).
    """

    id: str
    scenario: str
    figure: float | None = None
    unit: str = ""
    ceiling: float | None = None
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    figure_text: str = ""
    ceiling_text: str = ""
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    peers: list[PeerFigure] = dataclasses.field(default_factory=list)

    @property
    def failed(self) -> bool:
        """Whether the scenario, or one of its peer runs, did not run to the end or did not
        verify its counts."""
        return self.error is not None or any(peer.error is not None for peer in self.peers)

    def as_json(self) -> dict[str, Any]:
        """The JSON object of this result (numbers rounded for reading)."""
        peers = {"peers": [peer.as_json() for peer in self.peers]} if self.peers else {}
        return {
            "id": self.id,
            "scenario": self.scenario,
            "figure": _round(self.figure),
            "unit": self.unit,
            "ceiling": _round(self.ceiling),
            "ratio": _round(self.ratio),
            "target": self.target,
            "met": self.met,
            **{key: _round(value) for key, value in self.extra.items()},
            "seconds": round(self.seconds, 1),
            "error": self.error,
            **peers,
        }


def _round(value: Any) -> Any:
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return round(value, 4 if abs(value) < 10 else 1)
    return value


def fmt_rate(value: float) -> str:
    """``12,345 jobs/s``."""
    return f"{value:,.0f} jobs/s"


def json_line(value: dict[str, Any]) -> str:
    """One compact JSON line."""
    return json.dumps(value, separators=(", ", ": "), ensure_ascii=False, default=str)


@dataclasses.dataclass(frozen=True, slots=True)
class _Row:
    """One line of the tables: chancy's figure of a scenario, or a peer's beside it."""

    id: str
    scenario: str
    library: str
    figure: str
    ceiling: str
    of_ceiling: str
    versus: str
    target: str
    met: bool | None
    error: bool


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _rows(results: Sequence[Result]) -> list[_Row]:
    """chancy's row of each result, each followed by its peers' rows."""
    rows: list[_Row] = []
    for result in results:
        rows.append(
            _Row(
                id=result.id,
                scenario=result.scenario,
                library="chancy",
                figure=result.figure_text or ("-" if result.error is None else "error"),
                ceiling=result.ceiling_text or "-",
                of_ceiling=_ratio(result.ratio),
                versus="",
                target=result.target,
                met=result.met,
                error=result.error is not None,
            )
        )
        for peer in result.peers:
            rows.append(
                _Row(
                    id=result.id,
                    scenario="",
                    library=peer.peer,
                    figure=peer.figure_text or ("-" if peer.error is None else "error"),
                    ceiling="",
                    of_ceiling=_ratio(peer.of_ceiling),
                    versus="-" if peer.chancy_vs_peer is None else f"{peer.chancy_vs_peer:.2f}x",
                    target=peer.target,
                    met=peer.met,
                    error=peer.error is not None,
                )
            )
    return rows


RIGHT_ALIGNED = frozenset({"figure", "ceiling", "÷ ceiling", "chancy vs peer"})


def _columns(with_peers: bool) -> list[str]:
    """The tables' columns; the library and the comparison only when peers ran."""
    library, versus = (["library"], ["chancy vs peer"]) if with_peers else ([], [])
    return ["id", "scenario", *library, "figure", "ceiling", "÷ ceiling", *versus, "target"]


def _cells(row: _Row, with_peers: bool) -> list[str]:
    """A row's cells for :func:`_columns` (the met column aside)."""
    library, versus = ([row.library], [row.versus]) if with_peers else ([], [])
    return [row.id, row.scenario, *library, row.figure, row.ceiling, row.of_ceiling, *versus]


def print_table(console: Console, title: str, results: Sequence[Result]) -> None:
    """The results as one table (with a row per peer figure, when peers ran), then each
    result's and each peer's notes."""
    with_peers = any(result.peers for result in results)
    table = Table(title=title, title_justify="left", show_lines=False)
    for name in _columns(with_peers):
        table.add_column(name, justify="right" if name in RIGHT_ALIGNED else "left")
    table.add_column("met?", justify="center")
    for row in _rows(results):
        if row.error:
            met = Text("ERROR", style="bold red")
        elif row.met is None:
            met = Text("-")
        else:
            met = Text("yes", style="green") if row.met else Text("no", style="yellow")
        table.add_row(*_cells(row, with_peers), row.target, met)
    console.print(table)
    for result in results:
        _print_notes(console, result.id, result.notes, result.error)
        for peer in result.peers:
            _print_notes(console, f"{result.id} {peer.peer}", peer.notes, peer.error)


def _print_notes(console: Console, label: str, notes: list[str], error: str | None) -> None:
    for note in notes:
        console.print(f"  {escape(label)}: {escape(note)}", highlight=False, soft_wrap=True)
    if error is not None:
        console.print(
            f"  {escape(label)}: [bold red]error:[/] {escape(error)}",
            highlight=False,
            soft_wrap=True,
        )


def markdown_table(results: Sequence[Result]) -> str:
    """The results as a markdown table (for the README): one row per scenario, and one
    per peer figure beside it, with the cells the rich table shows."""
    with_peers = any(result.peers for result in results)
    header = [*_columns(with_peers), "met"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in _rows(results):
        met = "error" if row.error else {None: "", True: "yes", False: "no"}[row.met]
        cells = [*_cells(row, with_peers), row.target, met]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)
