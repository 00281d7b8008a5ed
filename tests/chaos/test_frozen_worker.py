"""Scenario 4: a worker frozen (SIGSTOP) past its lease, then thawed (SIGCONT): its late
outcomes are turned away by the fence, and each job keeps its new attempt's result."""

from __future__ import annotations

import pytest

from benchmarks.chaos.harness import ScenarioRun, Size
from benchmarks.chaos.scenarios import FrozenWorker
from tests.chaos.checks import CHAOS_TIMEOUT, InvariantsHold, run_once

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(CHAOS_TIMEOUT)]

SIZE = Size(jobs=1_000, chaos_seconds=30, job_seconds=0.3)


@pytest.fixture(scope="module")
def run() -> ScenarioRun:
    """One run of the scenario, shared by the tests below."""
    return run_once(FrozenWorker(), SIZE)


class TestFrozenWorker(InvariantsHold):
    def test_workers_are_frozen_while_they_run_jobs(self, run: ScenarioRun) -> None:
        assert run.events["workers frozen"] >= 1, run.explain()
        assert run.invariants.interrupted_runs["worker frozen (SIGSTOP)"] > 0, run.explain()

    def test_the_late_outcomes_of_a_thawed_worker_are_rejected(self, run: ScenarioRun) -> None:
        assert run.stale_rejected >= 1, run.explain()
