"""Scenario 8: workflows while a worker is SIGKILLed every 2 s and restarted; every
workflow finishes, no step starts before its parents succeeded, no fan-in runs twice at
once."""

from __future__ import annotations

import pytest

from benchmarks.chaos.harness import ScenarioRun, Size
from benchmarks.chaos.scenarios import KilledWorkflows
from tests.chaos.checks import CHAOS_TIMEOUT, InvariantsHold, run_once

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(CHAOS_TIMEOUT)]

SIZE = Size(jobs=1_000, chaos_seconds=30, job_seconds=0.2)


@pytest.fixture(scope="module")
def run() -> ScenarioRun:
    """One run of the scenario, shared by the tests below."""
    return run_once(KilledWorkflows(), SIZE)


class TestKilledWorkflows(InvariantsHold):
    def test_workers_are_killed_while_they_run_steps(self, run: ScenarioRun) -> None:
        assert run.events["workers killed"] >= 5, run.explain()
        assert run.invariants.interrupted_runs["worker killed (SIGKILL)"] > 0, run.explain()

    def test_every_workflow_succeeds(self, run: ScenarioRun) -> None:
        assert run.details["workflows"] == SIZE.jobs // 5, run.explain()
        assert run.details["workflows not succeeded"] == 0, run.explain()

    def test_no_step_begins_before_its_parents_succeeded(self, run: ScenarioRun) -> None:
        assert run.details["steps begun before a parent succeeded"] == [], run.explain()
