"""WorkerSettings: every default is the service's own, and a value that could not work
fails when the settings are made, naming the setting and the fix."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from chancy.errors import ConfigurationError
from chancy.repository import LEASE_SECONDS_DEFAULT
from chancy.services import (
    CRON_INTERVAL_DEFAULT,
    LEADER_TTL_DEFAULT,
    PROMOTE_INTERVAL_DEFAULT,
    RESCUE_INTERVAL_DEFAULT,
    RETENTION_DEFAULT,
)
from chancy.states import JobState
from chancy.worker import SHUTDOWN_TIMEOUT_DEFAULT, WorkerSettings


def test_the_defaults_are_the_services_own() -> None:
    settings = WorkerSettings()
    assert (
        settings.lease_seconds,
        settings.shutdown_timeout,
        settings.leader_ttl,
        settings.promote_interval,
        settings.rescue_interval,
        settings.cron_interval,
    ) == (
        LEASE_SECONDS_DEFAULT,
        SHUTDOWN_TIMEOUT_DEFAULT,
        LEADER_TTL_DEFAULT,
        PROMOTE_INTERVAL_DEFAULT,
        RESCUE_INTERVAL_DEFAULT,
        CRON_INTERVAL_DEFAULT,
    )
    assert dict(settings.retention) == dict(RETENTION_DEFAULT)


def test_settings_are_frozen_and_keyword_only() -> None:
    settings = WorkerSettings(lease_seconds=5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.lease_seconds = 10  # type: ignore[misc]
    with pytest.raises(TypeError):
        settings.retention[JobState.FAILED] = timedelta(0)  # type: ignore[index]
    with pytest.raises(TypeError):
        WorkerSettings(5)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "setting", [{"lease_seconds": 0}, {"rescue_interval": -1}, {"leader_ttl": float("inf")}]
)
def test_seconds_must_be_finite_and_more_than_zero(setting: dict[str, float]) -> None:
    (name,) = setting
    with pytest.raises(ConfigurationError, match=f"{name}=.* cannot work: give a finite number"):
        WorkerSettings(**setting)  # type: ignore[arg-type]


def test_a_shutdown_timeout_of_zero_gives_jobs_back_at_once() -> None:
    assert WorkerSettings(shutdown_timeout=0).shutdown_timeout == 0
    with pytest.raises(ConfigurationError, match="shutdown_timeout=-1"):
        WorkerSettings(shutdown_timeout=-1)


def test_batches_are_whole_numbers_of_rows() -> None:
    with pytest.raises(ConfigurationError, match=r"prune_batch=0\) cannot work"):
        WorkerSettings(prune_batch=0)
    with pytest.raises(ConfigurationError, match=r"promote_batch=2\.5"):
        WorkerSettings(promote_batch=2.5)  # type: ignore[arg-type]


def test_retention_is_for_finished_states_only() -> None:
    with pytest.raises(ConfigurationError, match=r"finished states only, not \['running'\]"):
        WorkerSettings(retention={JobState.RUNNING: timedelta(days=1)})
    with pytest.raises(ConfigurationError, match=r"for failed is datetime\.timedelta\(days=-1"):
        WorkerSettings(retention={JobState.FAILED: timedelta(days=-1)})


def test_shutdown_timeout_may_be_infinite_to_never_interrupt_running_jobs() -> None:
    assert WorkerSettings(shutdown_timeout=float("inf")).shutdown_timeout == float("inf")


@pytest.mark.parametrize(
    "setting",
    [
        {"lease_seconds": 1e300},  # a lease PostgreSQL cannot store failed every claim
        {"lease_seconds": 10**400},  # past float's range
        {"rescue_interval": float("inf")},
        {"shutdown_timeout": float("nan")},
        {"prune_batch": 2**40},  # past a 32-bit LIMIT
    ],
)
def test_values_past_what_can_be_stored_fail_at_once(setting: dict[str, object]) -> None:
    (name,) = setting
    with pytest.raises(ConfigurationError, match=f"{name}="):
        WorkerSettings(**setting)  # type: ignore[arg-type]


def test_a_retention_past_the_range_of_dates_fails_at_once() -> None:
    with pytest.raises(ConfigurationError, match="1,000 years"):
        WorkerSettings(retention={JobState.SUCCEEDED: timedelta.max})


def test_a_retention_may_name_its_states() -> None:
    settings = WorkerSettings(retention={"failed": timedelta(days=2)})  # type: ignore[dict-item]
    assert settings.retention == {JobState.FAILED: timedelta(days=2)}
    assert all(type(state) is JobState for state in settings.retention)


def test_settings_are_hashable_values() -> None:
    assert hash(WorkerSettings()) == hash(WorkerSettings())
    assert WorkerSettings(lease_seconds=5) != WorkerSettings()


def test_claims_commit_asynchronously_unless_durable_claims_is_set() -> None:
    assert WorkerSettings().durable_claims is False
    assert WorkerSettings(durable_claims=True).durable_claims is True


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_durable_claims_is_true_or_false(value: object) -> None:
    with pytest.raises(ConfigurationError, match="durable_claims="):
        WorkerSettings(durable_claims=value)  # type: ignore[arg-type]
