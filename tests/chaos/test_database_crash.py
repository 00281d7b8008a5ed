"""Scenario 3, harder: PostgreSQL crashes (immediate shutdown) right after workers
claimed jobs, and starts 5 s later; no job is lost, and no attempt runs twice under one
fencing token."""

from __future__ import annotations

import pytest

from benchmarks.chaos.harness import ScenarioRun, Size
from benchmarks.chaos.scenarios import DatabaseCrash
from tests.chaos.checks import CHAOS_TIMEOUT, InvariantsHold, run_once

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(CHAOS_TIMEOUT)]

SIZE = Size(jobs=300, chaos_seconds=20, job_seconds=0.3)


@pytest.fixture(scope="module")
def run() -> ScenarioRun:
    """One run of the scenario, shared by the tests below."""
    return run_once(DatabaseCrash(), SIZE)


class TestDatabaseCrash(InvariantsHold):
    def test_the_server_crashes_right_after_workers_claimed_jobs(self, run: ScenarioRun) -> None:
        assert run.events["crashes"] >= 1, run.explain()
        assert run.events["jobs claimed just before a crash"] >= DatabaseCrash.wave, run.explain()
