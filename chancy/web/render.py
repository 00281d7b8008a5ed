"""What the templates show values with: ages, times, JSON, and the per-minute chart as
inline SVG (no JavaScript library)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from jinja2 import Environment
from markupsafe import Markup

__all__ = ["age", "install", "pretty", "sparkline", "when"]

SPARK_WIDTH = 180
SPARK_HEIGHT = 28


def install(environment: Environment) -> None:
    """Make the filters available to ``environment``'s templates."""
    environment.filters.update(age=age, when=when, sparkline=sparkline, number=number)


def age(now: datetime | None, since: datetime | None) -> str:
    """``3 s``, ``4 min``, ``2 h``, ``5 d``: how long ago ``since`` was; empty for None."""
    if now is None or since is None:
        return ""
    seconds = max(0.0, (now - since).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def when(moment: datetime | None) -> str:
    """A timestamp to the second, in the server's time zone; ``—`` for None."""
    if moment is None:
        return "—"
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def number(value: int | None) -> str:
    """``12,345``; empty for none."""
    return f"{value:,}" if value else ""


def pretty(value: Any) -> str:
    """JSON, indented, keys sorted."""
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


def sparkline(counts: Sequence[int]) -> Markup:
    """Bars of ``counts`` (oldest first) as an inline SVG, with the total as its title."""
    top = max(counts, default=0) or 1
    width = SPARK_WIDTH / max(len(counts), 1)
    bars = []
    for index, count in enumerate(counts):
        height = 0 if count == 0 else max(1.0, SPARK_HEIGHT * count / top)
        bars.append(
            f'<rect x="{index * width:.1f}" y="{SPARK_HEIGHT - height:.1f}" '
            f'width="{max(width - 0.6, 0.5):.1f}" height="{height:.1f}"></rect>'
        )
    total = sum(counts)
    return Markup(
        f'<svg class="spark" width="{SPARK_WIDTH}" height="{SPARK_HEIGHT}" role="img" '
        f'viewBox="0 0 {SPARK_WIDTH} {SPARK_HEIGHT}"><title>{total} finished in the last '
        f"hour (per minute)</title>{''.join(bars)}</svg>"
    )
