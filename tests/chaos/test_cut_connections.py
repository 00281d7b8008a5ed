"""Scenario 2: LISTEN and random worker connections terminated every second; the
workers reconnect and keep working."""

from __future__ import annotations

import pytest

from benchmarks.chaos.harness import ScenarioRun, Size
from benchmarks.chaos.scenarios import CutConnections
from tests.chaos.checks import CHAOS_TIMEOUT, InvariantsHold, run_once

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(CHAOS_TIMEOUT)]

SIZE = Size(jobs=1_500, chaos_seconds=25, job_seconds=0.5)


@pytest.fixture(scope="module")
def run() -> ScenarioRun:
    """One run of the scenario, shared by the tests below."""
    return run_once(CutConnections(), SIZE)


class TestCutConnections(InvariantsHold):
    def test_listen_and_worker_connections_are_cut_every_second(self, run: ScenarioRun) -> None:
        assert run.events["LISTEN connections cut"] >= SIZE.chaos_seconds / 2, run.explain()
        assert run.events["connections cut"] > run.events["LISTEN connections cut"], run.explain()

    def test_every_worker_listens_again_once_the_cutting_stops(self, run: ScenarioRun) -> None:
        serving = run.events["workers serving after the cuts"]
        assert serving == SIZE.workers, run.explain()
        assert run.events["workers listening again after the cuts"] == serving, run.explain()
