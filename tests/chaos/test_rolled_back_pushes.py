"""Scenario 5: 8 producers push in their own transactions while workers are killed;
half of them roll back, and exactly the committed jobs run."""

from __future__ import annotations

import pytest

from benchmarks.chaos.harness import ScenarioRun, Size
from benchmarks.chaos.scenarios import RolledBackPushes
from tests.chaos.checks import CHAOS_TIMEOUT, InvariantsHold, run_once

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(CHAOS_TIMEOUT)]

SIZE = Size(jobs=1_200, chaos_seconds=30, job_seconds=0.5)


@pytest.fixture(scope="module")
def run() -> ScenarioRun:
    """One run of the scenario, shared by the tests below."""
    return run_once(RolledBackPushes(), SIZE)


class TestRolledBackPushes(InvariantsHold):
    def test_half_the_pushed_jobs_are_rolled_back_while_workers_are_killed(
        self, run: ScenarioRun
    ) -> None:
        committed = run.events["jobs pushed and committed"]
        assert committed == SIZE.jobs, run.explain()
        assert run.events["jobs pushed and rolled back"] == committed, run.explain()
        assert len(run.expected.never_exist) == committed, run.explain()
        assert run.events["workers killed"] >= 5, run.explain()
