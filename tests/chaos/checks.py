"""The tests every chaos scenario must pass, inherited by each scenario's test class.

A scenario's test module provides a module-scoped ``run`` fixture (one run of the
scenario, shared by its tests), and its test class adds the tests particular to it; the
invariants come from :class:`InvariantsHold`, one test each, each failing with the
evidence.
"""

from __future__ import annotations

import asyncio

from benchmarks.chaos.harness import Scenario, ScenarioRun, Size, run_scenario

__all__ = ["CHAOS_TIMEOUT", "InvariantsHold", "run_once"]

# One scenario's run (in the setup of its first test) plus its checks.
CHAOS_TIMEOUT = 300


def run_once(scenario: Scenario, size: Size) -> ScenarioRun:
    """Run ``scenario`` in an event loop of its own (for a synchronous fixture)."""
    return asyncio.run(run_scenario(scenario, size))


class InvariantsHold:
    """No job lost, the expected errors, no stale write, duplicates only where a worker
    died, no double run, nothing stuck; where workers are only stopped gracefully, no
    lapsed lease and no duplicate at all; and the workers themselves neither crash nor
    hang."""

    def test_every_job_reaches_its_expected_final_state(self, run: ScenarioRun) -> None:
        assert run.invariants.lost == (), run.explain()

    def test_exactly_the_committed_jobs_exist_and_run(self, run: ScenarioRun) -> None:
        assert run.invariants.phantoms == (), run.explain()

    def test_every_job_ends_with_its_expected_errors(self, run: ScenarioRun) -> None:
        assert run.invariants.wrong_errors == (), run.explain()

    def test_no_outcome_overwrites_a_newer_attempt(self, run: ScenarioRun) -> None:
        assert run.invariants.stale == (), run.explain()

    def test_a_job_runs_again_only_when_its_attempt_was_recorded_lost(
        self, run: ScenarioRun
    ) -> None:
        assert run.invariants.unexplained_duplicates == (), run.explain()

    def test_no_run_of_a_job_overlaps_another_unless_its_worker_froze(
        self, run: ScenarioRun
    ) -> None:
        assert run.invariants.double_runs == (), run.explain()

    def test_no_lease_lapses_unless_its_worker_was_killed_or_frozen(self, run: ScenarioRun) -> None:
        assert run.invariants.lapsed_leases == (), run.explain()

    def test_no_job_runs_again_when_workers_are_only_stopped_gracefully(
        self, run: ScenarioRun
    ) -> None:
        assert run.invariants.graceful_duplicates == (), run.explain()

    def test_no_job_is_left_running_once_the_workers_are_gone(self, run: ScenarioRun) -> None:
        assert run.invariants.stuck == (), run.explain()

    def test_no_worker_dies_that_was_not_killed(self, run: ScenarioRun) -> None:
        assert run.crashes == (), run.explain()

    def test_every_worker_stops_cleanly_on_sigterm_afterwards(self, run: ScenarioRun) -> None:
        assert run.bad_stops == (), run.explain()
