"""What a scenario reports, and how the run prints it: a rich table and JSON lines."""

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

__all__ = ["Result", "fmt_rate", "json_line", "print_table"]


@dataclasses.dataclass(slots=True)
class Result:
    """One scenario's outcome.

    ``figure`` (in ``unit``) is the headline number; ``ceiling`` is what it is compared
    with (same unit), ``ratio`` the comparison the ``target`` is about, and ``met``
    whether it was reached (None: not judged). ``figure_text`` and ``ceiling_text`` are
    the table's cells; ``extra`` goes into the JSON line; ``notes`` are printed under the
    table. ``error`` is set when the scenario did not run to the end or its counts did
    not verify.
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

    def as_json(self) -> dict[str, Any]:
        """The JSON object of this result (numbers rounded for reading)."""
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


def print_table(console: Console, title: str, results: Sequence[Result]) -> None:
    """The results as one table, then each result's notes."""
    table = Table(title=title, title_justify="left", show_lines=False)
    for name, justify in (
        ("id", "left"),
        ("scenario", "left"),
        ("figure", "right"),
        ("ceiling", "right"),
        ("ratio", "right"),
        ("target", "left"),
        ("met?", "center"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for result in results:
        if result.error is not None:
            met = Text("ERROR", style="bold red")
        elif result.met is None:
            met = Text("-")
        else:
            met = Text("yes", style="green") if result.met else Text("no", style="yellow")
        table.add_row(
            result.id,
            result.scenario,
            result.figure_text or ("-" if result.error is None else "error"),
            result.ceiling_text or "-",
            "-" if result.ratio is None else f"{result.ratio:.2f}",
            result.target,
            met,
        )
    console.print(table)
    for result in results:
        for note in result.notes:
            console.print(f"  {result.id}: {escape(note)}", highlight=False, soft_wrap=True)
        if result.error is not None:
            console.print(
                f"  {result.id}: [bold red]error:[/] {escape(result.error)}",
                highlight=False,
                soft_wrap=True,
            )
