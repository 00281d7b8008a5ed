"""What a job may raise to say how its attempt ends, other than by failing.

These are not errors (they are not :class:`~chancy.errors.ChancyError`): a job raises
them on purpose, and the worker does what they ask.

- :class:`Snooze`: come back later. The job goes back to ``scheduled``, due ``seconds``
  from now, without using an attempt. A job may snooze at most ``max_snoozes`` times
  (:meth:`~chancy.jobs.Job.with_max_snoozes`, default 100); the snooze past that fails it.
- :class:`Cancel`: stop for good. The job ends ``cancelled``, never retried, its
  ``reason`` recorded in ``errors``.

Both check their argument when made, so ``raise Snooze(float("nan"))`` raises a
``ValueError`` naming the problem instead (which fails the attempt like any exception).
"""

from __future__ import annotations

import math

__all__ = ["CANCEL_REASON_MAX", "SNOOZE_SECONDS_MAX", "Cancel", "JobControl", "Snooze"]

SNOOZE_SECONDS_MAX = 366 * 24 * 3600.0
"""The longest snooze: a year (and a day). Further than that is a schedule, not a snooze:
push a job with ``with_scheduled_at``."""
CANCEL_REASON_MAX = 10_000
"""The most characters of a cancel's reason that are stored (the rest is cut)."""


class JobControl(Exception):
    """The base of what a job raises to end its attempt other than by failing."""


class Snooze(JobControl):
    """Raise ``Snooze(seconds)`` in a job to run it again ``seconds`` from now (zero or
    more, finite, at most :data:`SNOOZE_SECONDS_MAX`), without using an attempt."""

    def __init__(self, seconds: float) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise TypeError(
                f"Snooze(seconds) takes a number of seconds, not {type(seconds).__name__}"
            )
        if not math.isfinite(seconds) or not 0 <= seconds <= SNOOZE_SECONDS_MAX:
            raise ValueError(
                f"Snooze({seconds!r}) cannot work: give a finite number of seconds from 0 to "
                f"{SNOOZE_SECONDS_MAX:.0f} (a year); to run much later, push a job with "
                "with_scheduled_at()"
            )
        super().__init__(float(seconds))
        self.seconds = float(seconds)

    def __str__(self) -> str:
        return f"snoozed for {self.seconds:g} s"


class Cancel(JobControl):
    """Raise ``Cancel("reason")`` in a job to end it ``cancelled``, without a retry; the
    reason (a str, cut to :data:`CANCEL_REASON_MAX` characters) is stored in its errors."""

    def __init__(self, reason: str) -> None:
        if not isinstance(reason, str):
            raise TypeError(f"Cancel(reason) takes a str, not {type(reason).__name__}")
        super().__init__(reason)
        self.reason = reason[:CANCEL_REASON_MAX]

    def __str__(self) -> str:
        return self.reason
