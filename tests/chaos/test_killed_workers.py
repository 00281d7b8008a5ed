"""Scenario 1: a worker SIGKILLed every 2 s and restarted; nothing is lost."""

from __future__ import annotations

import pytest

from benchmarks.chaos.harness import ScenarioRun, Size
from benchmarks.chaos.scenarios import KilledWorkers
from chancy.services import LEADER_TTL_DEFAULT
from tests.chaos.checks import CHAOS_TIMEOUT, InvariantsHold, run_once

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(CHAOS_TIMEOUT)]

SIZE = Size(jobs=1_500, chaos_seconds=30, job_seconds=0.5)
# A killed leader is replaced within its lease plus one renewal period; then its jobs'
# leases must expire and be seen by the rescuer. Beyond that, allow for a loaded machine.
WAIT_BOUND = LEADER_TTL_DEFAULT * 4 / 3 + KilledWorkers.settings.lease_seconds + 5


@pytest.fixture(scope="module")
def run() -> ScenarioRun:
    """One run of the scenario, shared by the tests below."""
    return run_once(KilledWorkers(), SIZE)


class TestKilledWorkers(InvariantsHold):
    def test_workers_are_killed_while_they_run_jobs(self, run: ScenarioRun) -> None:
        assert run.events["workers killed"] >= 10, run.explain()
        assert run.invariants.interrupted_runs["worker killed (SIGKILL)"] > 0, run.explain()

    def test_a_killed_workers_jobs_run_again_once_its_leases_expire(self, run: ScenarioRun) -> None:
        assert run.invariants.max_wait_after_death is not None, run.explain()
        assert run.invariants.max_wait_after_death < WAIT_BOUND, run.explain()
