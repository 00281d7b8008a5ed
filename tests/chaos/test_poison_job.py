"""Scenario 6: a job that SIGKILLs its own worker every time ends ``failed`` after
``max_attempts`` runs, and the queue does not stall: every other job succeeds."""

from __future__ import annotations

import pytest

from benchmarks.chaos.harness import ScenarioRun, Size
from benchmarks.chaos.scenarios import PoisonJob
from tests.chaos.checks import CHAOS_TIMEOUT, InvariantsHold, run_once

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(CHAOS_TIMEOUT)]

SIZE = Size(jobs=1_000, chaos_seconds=30, job_seconds=0.3)
ATTEMPTS = PoisonJob.poison_attempts


@pytest.fixture(scope="module")
def run() -> ScenarioRun:
    """One run of the scenario, shared by the tests below."""
    return run_once(PoisonJob(), SIZE)


class TestPoisonJob(InvariantsHold):
    def test_the_poison_job_fails_after_max_attempts_each_lost_with_its_worker(
        self, run: ScenarioRun
    ) -> None:
        poison = run.details["poison"]
        assert (poison["state"], poison["attempts"]) == ("failed", ATTEMPTS), run.explain()
        assert poison["errors"] == ["LeaseExpired"] * ATTEMPTS, run.explain()

    def test_each_run_of_the_poison_job_kills_a_different_worker(self, run: ScenarioRun) -> None:
        runners = run.details["poison"]["run_by"]
        assert len(set(runners)) == len(runners) == ATTEMPTS, run.explain()
        assert set(runners) == run.exited, run.explain()
