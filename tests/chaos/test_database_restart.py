"""Scenario 3: PostgreSQL stopped for 5 s mid-drain and started again; the workers
survive and resume."""

from __future__ import annotations

import pytest

from benchmarks.chaos.harness import ScenarioRun, Size
from benchmarks.chaos.scenarios import DatabaseRestart
from tests.chaos.checks import CHAOS_TIMEOUT, InvariantsHold, run_once

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(CHAOS_TIMEOUT)]

SIZE = Size(jobs=1_500, chaos_seconds=25, job_seconds=0.5)


@pytest.fixture(scope="module")
def run() -> ScenarioRun:
    """One run of the scenario, shared by the tests below."""
    return run_once(DatabaseRestart(), SIZE)


class TestDatabaseRestart(InvariantsHold):
    def test_the_server_stops_while_jobs_are_running(self, run: ScenarioRun) -> None:
        assert run.events["outages"] >= 1, run.explain()
        assert run.events["jobs running when the server stopped"] > 0, run.explain()
