"""Helpers for an application's own tests: what was pushed, and running jobs in-process.

Everything here runs on real PostgreSQL, through the statements a worker and a push
use (no fake that could drift from them)::

    from chancy.testing import assert_pushed, drain, run_job

    async def test_signup_sends_a_welcome(session):          # the app's AsyncSession
        await signup(session, "ada@example.com")              # pushes in the session
        await assert_pushed(session, func=send_welcome, kwargs={"email": "ada@example.com"})

    async def test_welcome_is_sent(chancy):                   # the pytest plugin's fixture
        await chancy.push(Job.from_func(send_welcome, kwargs={"email": "ada@example.com"}))
        result = await drain(chancy)
        assert result.succeeded == 1

    async def test_send_welcome_formats_the_subject():
        assert await run_job(send_welcome, email="ada@example.com") == "Welcome, ada"

- :func:`assert_pushed`, :func:`refute_pushed`, :func:`pushed_jobs` read the jobs through
  a :class:`~chancy.Chancy` (committed jobs) or the caller's ``AsyncSession`` or
  ``AsyncConnection`` (also the jobs pushed in its transaction, not yet committed).
- :func:`drain` runs the ready jobs in this process, one at a time in the order a worker
  claims them, through the real claim and outcome statements.
- :func:`run_job` runs one job as a worker would, without a database.

There is no mode that runs a job when it is pushed: the transaction that pushed it may
still roll back, and a job must never run for a push that did not happen. Push, commit,
then :func:`drain`.

Sync twins taking a synchronous ``Session`` or ``Connection`` are in
:mod:`chancy.testing.sync`; the pytest fixtures ``chancy_dsn`` and ``chancy`` in
:mod:`chancy.testing.plugin` (registered when chancy is installed).
"""

from __future__ import annotations

from chancy.testing._drain import DrainResult, drain
from chancy.testing._pushed import assert_pushed, pushed_jobs, refute_pushed
from chancy.testing._run import run_job

__all__ = [
    "DrainResult",
    "assert_pushed",
    "drain",
    "pushed_jobs",
    "refute_pushed",
    "run_job",
]
