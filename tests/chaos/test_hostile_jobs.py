"""Scenario 7: hostile jobs among plain ones while workers are stopped gracefully: a
result or an error PostgreSQL cannot store fails its own job only; a job calling
``sys.exit`` fails and its worker runs on; a slow import lets no lease lapse; a stop past
``shutdown_timeout`` waits for a thread instead of giving its job to another worker."""

from __future__ import annotations

import pytest

from benchmarks.chaos.harness import ScenarioRun, Size
from benchmarks.chaos.scenarios import HostileJobs
from tests.chaos.checks import CHAOS_TIMEOUT, InvariantsHold, run_once

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(CHAOS_TIMEOUT)]

SIZE = Size(jobs=720, chaos_seconds=30, job_seconds=0.4)


@pytest.fixture(scope="module")
def run() -> ScenarioRun:
    """One run of the scenario, shared by the tests below."""
    return run_once(HostileJobs(), SIZE)


class TestHostileJobs(InvariantsHold):
    def test_every_kind_of_hostile_job_is_pushed(self, run: ScenarioRun) -> None:
        hostile = [event for event in run.events if event.startswith("hostile: ")]
        assert len(hostile) == len(HostileJobs().kinds()), run.explain()

    def test_poison_results_and_exits_fail_with_their_own_errors(self, run: ScenarioRun) -> None:
        failed = run.invariants.failed_by_error
        assert {"ResultNotJSON", "JobExitError", "ValueError", "CancelledError"} <= set(failed), (
            run.explain()
        )
        assert run.invariants.failed == len(run.expected.fail), run.explain()

    def test_a_job_calling_sys_exit_leaves_its_worker_running(self, run: ScenarioRun) -> None:
        runners = set(run.details["exit runners"])
        assert runners, run.explain()
        assert runners <= run.clean_stops, run.explain()
        assert not runners & run.exited, run.explain()

    def test_workers_import_the_slow_module_while_they_run_other_jobs(
        self, run: ScenarioRun
    ) -> None:
        assert run.details["slow importers"], run.explain()

    def test_a_stop_waits_for_a_thread_past_shutdown_timeout_and_writes_its_outcome(
        self, run: ScenarioRun
    ) -> None:
        assert run.events["workers stopped gracefully (SIGTERM)"] >= 2, run.explain()
        assert run.events["threads outliving shutdown_timeout at a stop"] >= 2, run.explain()
        assert run.details["waited"] >= 2, run.explain()

    def test_every_gracefully_stopped_worker_exits_cleanly(self, run: ScenarioRun) -> None:
        stopped = set(run.details["stopped"])
        assert len(stopped) >= 2, run.explain()
        assert stopped <= run.clean_stops, run.explain()
