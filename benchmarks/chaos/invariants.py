"""The invariants checked after every chaos scenario, from the stored rows alone.

After the workers are gone, the jobs table and the ledger (one row per run: job id,
attempt, fence, worker pid, time) must show:

- **no job lost**: every job meant to succeed ``succeeded``, every job meant to fail
  ``failed``, and no job exists that was never committed (nor ran);
- **the expected errors**: a job whose errors the scenario foretold (a result PostgreSQL
  cannot store fails with ``ResultNotJSON``, a job calling ``sys.exit`` with
  ``JobExitError``, neither retried; a plain job with none) has exactly those, in order;
- **no stale write**: each fencing token started at most once (by the workers' journals)
  and ran at most once (by the ledger), so that it names one run; each attempt number
  too, except that a claim a database crash undid (claims commit asynchronously) gives
  its number to the next claim, under a new fence; and a succeeded job's state is its
  last attempt's (``attempts`` is the highest attempt in the ledger, and the stored
  ``result``, which names the attempt, fence and pid of the run that returned it, is the
  run of the job's stored fence);
- **duplicates only where a worker died mid-job**: every run that did not end its own
  attempt (a run whose attempt failed by itself did: it was retried, not duplicated) has
  its attempt recorded as ``LeaseExpired`` in the job's ``errors``, its worker killed,
  frozen or cut off from the database; or its claim was undone by a database crash (the
  run began before the crash, and its attempt number ran again after it, under a new
  fence);
- **no double run**: no run of a job ends after another run of it began (the ledger
  notes the end of the runs of plain functions in threads), unless its worker was frozen
  or its claim was undone by a database crash;
- **nothing stuck**: no job is ``running`` once every worker is gone.

A scenario that only stops workers gracefully (``Expectation.graceful``) promises more:
no lease lapses (no ``LeaseExpired`` on a worker that was not killed or frozen, whatever
its jobs did: a slow import, a thread outliving ``shutdown_timeout``) and no duplicate at
all.

Each violation is described with its evidence (the job row and its runs), so a failing
test says what went wrong without a debugger.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from benchmarks.chaos.fleet import Start, WorkerEvent

__all__ = ["Expectation", "Invariants", "Run", "StoredJob", "check_invariants"]

EXCERPT_DEFAULT = 15
Deaths = Mapping[int, Sequence[WorkerEvent]]
# The job functions (benchmarks/chaos/) whose result names the run that returned it.
RESULT_NAMES_RUN = frozenset({"record", "sleep_then_record", "hold_thread", "record_after_import"})
LEASE_EXPIRED = "LeaseExpired"
# Claims commit asynchronously: one answered less than this before a database crash
# (PostgreSQL flushes an asynchronous commit within three wal_writer_delay, 600 ms by
# default) may be undone by it, and its run begins within moments of the answer.
UNFLUSHED_WINDOW = 2.0
# The rescuer's message names the worker whose lease lapsed (chancy/repository/maintenance.py);
# a worker id is host:pid:token.
LAPSED_WORKER = re.compile(r"the worker [^:\s]*:(\d+):")


@dataclasses.dataclass(frozen=True, slots=True)
class Expectation:
    """What a scenario pushed: the ids that must succeed, that must fail, and that must
    never exist (pushed in transactions that rolled back); ``errors``, the types of the
    errors some jobs must end with, in order (none: no error at all); ``graceful``, that
    the scenario kills, freezes and cuts nothing, so no lease may lapse and no job run
    twice; ``crashes``, when the database crashed (an immediate shutdown: claims it had
    not flushed are undone)."""

    succeed: frozenset[int]
    fail: frozenset[int] = frozenset()
    never_exist: frozenset[int] = frozenset()
    errors: Mapping[int, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    graceful: bool = False
    crashes: tuple[float, ...] = ()

    @property
    def pushed(self) -> frozenset[int]:
        """Every committed job."""
        return self.succeed | self.fail


@dataclasses.dataclass(frozen=True, slots=True)
class Run:
    """One ledger row: a run of ``attempt`` (fencing token ``fence``) of job ``job_id``
    by worker ``pid``, from ``at`` until ``ended`` (known for the runs of plain functions
    in threads only); ``started``, when the worker's journal says it began (its ledger
    row may be written later)."""

    job_id: int
    attempt: int
    pid: int
    at: float
    ended: float | None = None
    fence: int | None = None
    started: float | None = None

    @property
    def began(self) -> float:
        """When the run began: by the journal if it says, else by the ledger."""
        return self.at if self.started is None else min(self.started, self.at)


@dataclasses.dataclass(frozen=True, slots=True)
class StoredJob:
    """The columns of a job row the invariants read."""

    id: int
    func: str
    kwargs: Mapping[str, Any]
    state: str
    attempts: int
    max_attempts: int
    result: Any
    errors: tuple[Mapping[str, Any], ...]
    worker_id: str | None
    lease_expires_at: datetime | None
    fence: int | None = None

    def error_of(self, attempt: int) -> Mapping[str, Any] | None:
        """The ``errors`` entry of ``attempt``, if it has one."""
        return next((e for e in self.errors if e.get("attempt") == attempt), None)

    def describe(self, runs: Sequence[Run]) -> str:
        """The row and its runs, as evidence in a message."""
        errors = [(e.get("attempt"), e.get("type")) for e in self.errors]
        ran = [(run.attempt, run.fence, run.pid) for run in runs]
        return (
            f"job {self.id} ({self.func.rsplit('.', 1)[-1]}): state={self.state} "
            f"attempts={self.attempts}/{self.max_attempts} fence={self.fence} "
            f"result={self.result} worker={self.worker_id} lease={self.lease_expires_at} "
            f"errors={errors} runs (attempt, fence, pid)={ran}"
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Invariants:
    """The violations of each invariant (empty when it holds), and the figures."""

    lost: tuple[str, ...]
    phantoms: tuple[str, ...]
    wrong_errors: tuple[str, ...]
    stale: tuple[str, ...]
    unexplained_duplicates: tuple[str, ...]
    double_runs: tuple[str, ...]
    lapsed_leases: tuple[str, ...]
    graceful_duplicates: tuple[str, ...]
    stuck: tuple[str, ...]
    succeeded: int
    failed: int
    runs: int
    failed_runs: int
    failed_by_error: collections.Counter[str]
    interrupted_runs: collections.Counter[str]
    max_wait_after_death: float | None

    @property
    def violations(self) -> dict[str, tuple[str, ...]]:
        """Each invariant's name and its violations, for the invariants that failed."""
        named = {
            "lost": self.lost,
            "phantom": self.phantoms,
            "wrong errors": self.wrong_errors,
            "stale write": self.stale,
            "unexplained duplicate": self.unexplained_duplicates,
            "double run": self.double_runs,
            "lease lapsed on a live worker": self.lapsed_leases,
            "duplicate though nothing was killed": self.graceful_duplicates,
            "stuck": self.stuck,
        }
        return {name: found for name, found in named.items() if found}

    @property
    def duplicates(self) -> int:
        """Runs that did not end their own attempt (a run whose attempt failed by itself
        did), so that another run of that job had to finish it."""
        return sum(self.interrupted_runs.values())

    def explain(self, limit: int = EXCERPT_DEFAULT) -> str:
        """Every violated invariant with its first ``limit`` pieces of evidence."""
        lines: list[str] = []
        for name, found in self.violations.items():
            lines.append(f"{name}: {len(found)}")
            lines.extend(f"  {item}" for item in found[:limit])
        return "\n".join(lines) or "all invariants hold"


async def check_invariants(
    db: asyncpg.Connection,
    expected: Expectation,
    deaths: Deaths,
    starts: Sequence[Start] = (),
) -> Invariants:
    """Check every invariant on the rows of ``db``; ``deaths`` are the fleet's kills,
    unexpected exits and freezes of each pid, in order; ``starts`` the run starts the
    workers noted in their journals."""
    jobs = {job.id: job for job in await _stored_jobs(db)}
    started: dict[int, list[Start]] = collections.defaultdict(list)
    for start in starts:
        started[start.job_id].append(start)
    runs: dict[int, list[Run]] = collections.defaultdict(list)
    for run in await _ledger(db):
        runs[run.job_id].append(_with_start(run, started[run.job_id]))
    crashes = expected.crashes
    causes: collections.Counter[str] = collections.Counter()
    unexplained: list[str] = []
    duplicated: list[str] = []
    waits: list[float] = []
    for job in jobs.values():
        for run in _interrupted(job, runs[job.id]):
            duplicated.append(f"attempt {run.attempt}: {job.describe(runs[job.id])}")
            cause = _cause(job, run, runs[job.id], deaths, crashes)
            if cause is None:
                unexplained.append(f"attempt {run.attempt}: {job.describe(runs[job.id])}")
                continue
            causes[cause] += 1
            waits.extend(_wait_after_death(job, run, runs[job.id], deaths))
    failed = [job for job in jobs.values() if job.state == "failed"]
    return Invariants(
        lost=tuple(_lost(jobs, runs, expected)),
        phantoms=tuple(_phantoms(jobs, runs, expected)),
        wrong_errors=tuple(_wrong_errors(jobs, runs, expected)),
        stale=tuple(
            s for job in jobs.values() for s in _stale(job, runs[job.id], started[job.id], crashes)
        ),
        unexplained_duplicates=tuple(unexplained),
        double_runs=tuple(
            d for job in jobs.values() for d in _double_runs(job, runs[job.id], deaths, crashes)
        ),
        lapsed_leases=tuple(
            lapse
            for job in jobs.values()
            for lapse in _lapsed_on_live_workers(job, runs[job.id], deaths)
        )
        if expected.graceful
        else (),
        graceful_duplicates=tuple(duplicated) if expected.graceful else (),
        stuck=tuple(job.describe(runs[job.id]) for job in jobs.values() if job.state == "running"),
        succeeded=sum(1 for job in jobs.values() if job.state == "succeeded"),
        failed=len(failed),
        runs=sum(len(found) for found in runs.values()),
        failed_runs=sum(
            1 for job in jobs.values() for run in runs[job.id] if _failed_by_itself(job, run)
        ),
        failed_by_error=collections.Counter(
            str(job.errors[-1].get("type")) if job.errors else "no error" for job in failed
        ),
        interrupted_runs=causes,
        max_wait_after_death=max(waits, default=None),
    )


async def _stored_jobs(db: asyncpg.Connection) -> list[StoredJob]:
    rows = await db.fetch(
        "SELECT id, func, kwargs, state, attempts, max_attempts, result, errors, worker_id, "
        "lease_expires_at, fence FROM chancy_jobs ORDER BY id"
    )
    return [
        StoredJob(
            id=row["id"],
            func=row["func"],
            kwargs=_json(row["kwargs"]) or {},
            state=row["state"],
            attempts=row["attempts"],
            max_attempts=row["max_attempts"],
            result=_json(row["result"]),
            errors=tuple(_json(row["errors"]) or ()),
            worker_id=row["worker_id"],
            lease_expires_at=row["lease_expires_at"],
            fence=row["fence"],
        )
        for row in rows
    ]


async def _ledger(db: asyncpg.Connection) -> list[Run]:
    rows = await db.fetch(
        "SELECT job_id, attempt, fence, pid, extract(epoch FROM at)::float8 AS at, "
        "extract(epoch FROM ended_at)::float8 AS ended "
        "FROM chaos_ledger ORDER BY job_id, attempt, at"
    )
    return [
        Run(row["job_id"], row["attempt"], row["pid"], row["at"], row["ended"], row["fence"])
        for row in rows
    ]


def _with_start(run: Run, starts: Sequence[Start]) -> Run:
    """``run`` with the start its worker's journal noted under its fence, if any."""
    noted = [start.at for start in starts if start.fence is not None and start.fence == run.fence]
    return dataclasses.replace(run, started=min(noted)) if noted else run


def _json(value: Any) -> Any:
    """A JSONB column as asyncpg returns it without a codec: text, decoded."""
    return json.loads(value) if isinstance(value, str) else value


def _lost(
    jobs: Mapping[int, StoredJob], runs: Mapping[int, list[Run]], expected: Expectation
) -> Iterable[str]:
    for job_id in sorted(expected.pushed):
        wanted = "failed" if job_id in expected.fail else "succeeded"
        job = jobs.get(job_id)
        if job is None:
            yield f"job {job_id} was committed but is not in the table"
        elif job.state != wanted:
            yield f"expected {wanted}: {job.describe(runs.get(job_id, []))}"


def _phantoms(
    jobs: Mapping[int, StoredJob], runs: Mapping[int, list[Run]], expected: Expectation
) -> Iterable[str]:
    for job_id in sorted(set(jobs) - expected.pushed):
        rolled_back = " (its push was rolled back)" if job_id in expected.never_exist else ""
        yield f"never committed{rolled_back}: {jobs[job_id].describe(runs.get(job_id, []))}"
    for job_id in sorted(set(runs) - set(jobs)):
        found = runs[job_id]
        yield f"job {job_id} ran {len(found)} times but is not in the table"


def _wrong_errors(
    jobs: Mapping[int, StoredJob], runs: Mapping[int, list[Run]], expected: Expectation
) -> Iterable[str]:
    for job_id, wanted in sorted(expected.errors.items()):
        job = jobs.get(job_id)
        if job is None:
            continue  # lost, said so there
        found = tuple(str(error.get("type")) for error in job.errors)
        if found != wanted:
            yield f"expected errors {list(wanted)}: {job.describe(runs.get(job_id, []))}"


def _stale(
    job: StoredJob, runs: Sequence[Run], starts: Sequence[Start], crashes: Sequence[float]
) -> Iterable[str]:
    per_fence = collections.Counter(run.fence for run in runs)
    for fence, count in sorted(per_fence.items(), key=lambda item: str(item[0])):
        if count > 1:
            yield f"fence {fence} ran {count} times: {job.describe(runs)}"
    by_fence: dict[int | None, list[Start]] = collections.defaultdict(list)
    for start in starts:
        by_fence[start.fence].append(start)
    for fence, found in by_fence.items():
        if len(found) > 1:
            pids = [start.pid for start in sorted(found, key=lambda start: start.at)]
            yield (
                f"fence {fence} was started {len(found)} times, by pids {pids} (it named "
                f"more than one run): {job.describe(runs)}"
            )
    ran = [(run.attempt, run.fence, run.began) for run in runs]
    for attempt, count in _attempts_reused(ran, crashes):
        yield f"attempt {attempt} ran {count} times: {job.describe(runs)}"
    began = [(start.attempt, start.fence, start.at) for start in starts]
    for attempt, count in _attempts_reused(began, crashes):
        yield f"attempt {attempt} was started {count} times: {job.describe(runs)}"
    if job.state == "succeeded":
        yield from _stale_success(job, runs)
    elif job.state == "failed" and job.errors and job.errors[-1].get("attempt") != job.attempts:
        yield f"the last error is not the last attempt's: {job.describe(runs)}"


def _attempts_reused(
    runs: Sequence[tuple[int, int | None, float]], crashes: Sequence[float]
) -> Iterable[tuple[int, int]]:
    """The attempt numbers among ``runs`` (attempt, fence, start) that more than one run
    had, with how many, unless every run but the last of that number had its claim undone
    by a database crash (:func:`_undone`), which gives the number to the next claim."""
    by_attempt: dict[int, list[tuple[int, int | None, float]]] = collections.defaultdict(list)
    for run in runs:
        by_attempt[run[0]].append(run)
    for attempt, found in sorted(by_attempt.items()):
        if len(found) < 2:
            continue
        ordered = sorted(found, key=lambda run: run[2])
        if not all(_undone(run, ordered, crashes) for run in ordered[:-1]):
            yield attempt, len(found)


def _undone(
    run: tuple[int, int | None, float],
    others: Sequence[tuple[int, int | None, float]],
    crashes: Sequence[float],
) -> bool:
    """Whether the claim of ``run`` (attempt, fence, start) was undone by a database
    crash: it began around a crash (claims commit asynchronously: one made just before
    the crash may not have reached the disk), and its attempt number ran again after the
    crash under another fence."""
    attempt, fence, began = run
    return any(
        abs(began - crash) <= UNFLUSHED_WINDOW
        and any(o[0] == attempt and o[1] != fence and o[2] > crash for o in others)
        for crash in crashes
    )


def _undone_by_crash(run: Run, runs: Sequence[Run], crashes: Sequence[float]) -> bool:
    """:func:`_undone` for a ledger run."""
    return _undone(
        (run.attempt, run.fence, run.began),
        [(other.attempt, other.fence, other.began) for other in runs],
        crashes,
    )


def _stale_success(job: StoredJob, runs: Sequence[Run]) -> Iterable[str]:
    last = max((run.attempt for run in runs), default=None)
    if last != job.attempts:
        yield f"succeeded as attempt {job.attempts}, last run was {last}: {job.describe(runs)}"
        return
    if job.error_of(job.attempts) is not None:
        yield f"succeeded as an attempt recorded as lost: {job.describe(runs)}"
    final = [run for run in runs if run.fence == job.fence]
    if len(final) != 1 or final[0].attempt != job.attempts:
        yield (
            f"succeeded under fence {job.fence}, which no single run of its last attempt "
            f"had: {job.describe(runs)}"
        )
        return
    if job.func.rsplit(".", 1)[-1] in RESULT_NAMES_RUN:
        wanted = {
            "n": job.kwargs.get("n"),
            "attempt": job.attempts,
            "fence": job.fence,
            "pid": final[0].pid,
        }
        if job.result != wanted:
            yield f"result is not the last run's ({wanted}): {job.describe(runs)}"


def _interrupted(job: StoredJob, runs: Sequence[Run]) -> Iterable[Run]:
    """The runs that did not end their own attempt: all but a succeeded job's final run
    (the run of its stored fence) and the runs whose attempt failed by itself."""
    for run in runs:
        if job.state == "succeeded" and run.fence == job.fence:
            continue
        if not _failed_by_itself(job, run):
            yield run


def _failed_by_itself(job: StoredJob, run: Run) -> bool:
    """Whether ``run``'s attempt ended with an error of its own (not a lapsed lease)."""
    error = job.error_of(run.attempt)
    return error is not None and error.get("type") != LEASE_EXPIRED


def _double_runs(
    job: StoredJob, runs: Sequence[Run], deaths: Deaths, crashes: Sequence[float]
) -> Iterable[str]:
    """Runs of ``job`` that overlap: one ended (by the ledger) after another began, and
    its worker was not frozen (nor killed) in between, nor was its claim undone by a
    database crash."""
    ordered = sorted(runs, key=lambda run: run.at)
    for earlier, later in itertools.pairwise(ordered):
        if earlier.ended is None or earlier.ended <= later.at:
            continue
        death = _death_during(earlier, deaths)
        if death is not None and death.at <= later.at:
            continue
        if _undone_by_crash(earlier, runs, crashes):
            continue
        yield (
            f"attempt {earlier.attempt} (pid {earlier.pid}) ran until {earlier.ended:.3f}, "
            f"attempt {later.attempt} (pid {later.pid}) began at {later.at:.3f}: "
            f"{job.describe(runs)}"
        )


def _lapsed_on_live_workers(job: StoredJob, runs: Sequence[Run], deaths: Deaths) -> Iterable[str]:
    """The attempts of ``job`` recorded ``LeaseExpired`` although their worker was
    neither killed, frozen nor dead (whether or not the attempt's run had begun)."""
    for error in job.errors:
        if error.get("type") != LEASE_EXPIRED:
            continue
        run = next((run for run in runs if run.attempt == error.get("attempt")), None)
        if run is not None and _death_during(run, deaths) is not None:
            continue
        named = LAPSED_WORKER.search(str(error.get("message")))
        if run is None and named is not None and deaths.get(int(named.group(1))):
            continue
        yield f"attempt {error.get('attempt')}: {job.describe(runs)}"


def _death_during(run: Run, deaths: Deaths) -> WorkerEvent | None:
    """The first death (or freeze) of ``run``'s worker after the run began."""
    return next((death for death in deaths.get(run.pid, ()) if death.at >= run.at), None)


def _cause(
    job: StoredJob, run: Run, runs: Sequence[Run], deaths: Deaths, crashes: Sequence[float]
) -> str | None:
    """Why ``run`` did not finish its job, from the job's ``errors``, the fleet's events
    and the database's crashes; None when nothing explains it."""
    if _undone_by_crash(run, runs, crashes):
        return "claim undone by a database crash"
    error = job.error_of(run.attempt)
    if error is None or error.get("type") != LEASE_EXPIRED:
        return None
    death = _death_during(run, deaths)
    if death is None:
        return "lease expired, worker alive"
    if death.kind == "killed":
        return "worker killed (SIGKILL)"
    if death.kind == "frozen":
        return "worker frozen (SIGSTOP)"
    return f"worker died on its own (exit {death.returncode})"


def _wait_after_death(
    job: StoredJob, run: Run, runs: Sequence[Run], deaths: Deaths
) -> Iterable[float]:
    """Seconds from the death of ``run``'s worker until the job was taken back: the next
    run's start, or (for a job out of attempts) the time its lost attempt was recorded."""
    death = _death_during(run, deaths)
    if death is None:
        return
    later = [other.at for other in runs if other.attempt > run.attempt]
    if later:
        yield min(later) - death.at
        return
    error = job.error_of(run.attempt)
    if error is not None and isinstance(error.get("at"), str):
        yield datetime.fromisoformat(error["at"]).timestamp() - death.at
