"""Queue: frozen settings, validated names."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from chancy.errors import InvalidQueueError
from chancy.queue import Queue, validate_queue_name


@pytest.mark.parametrize("name", ["default", "emails.high", "tenant:42", "a-b_c", "x" * 64])
def test_valid_names_pass(name: str) -> None:
    assert validate_queue_name(name) == name


@pytest.mark.parametrize(
    ("name", "words"),
    [("", "empty"), ("x" * 65, "at most 64"), ("a b", "' '"), ("a/b", "'/'"), (3, "str")],
)
def test_invalid_names_say_what_is_wrong(name: object, words: str) -> None:
    with pytest.raises(InvalidQueueError, match=words):
        validate_queue_name(name)


def test_queue_is_frozen() -> None:
    queue = Queue(name="default", concurrency=10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        queue.concurrency = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    "settings",
    [
        {"concurrency": 0},
        {"concurrency": True},
        {"executor": "fibers"},
        {"polling_interval": 0},
        {"rate_limit": 0},
    ],
)
def test_bad_settings_are_rejected(settings: dict[str, object]) -> None:
    with pytest.raises(InvalidQueueError):
        Queue(name="default", **settings)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"concurrency": 2**31}, "concurrency"),
        ({"global_concurrency": 2**31}, "global_concurrency"),
        ({"rate_limit": 2**31}, "rate_limit"),
        ({"rate_limit": 2.5}, "rate_limit"),
        ({"rate_limit": True}, "rate_limit"),
        ({"rate_limit": 1, "rate_period": timedelta(days=10**8)}, "rate_period .* at most"),
    ],
    ids=["concurrency", "global", "rate-limit", "rate-float", "rate-bool", "rate-period"],
)
def test_limits_postgresql_cannot_store_or_compute_are_refused(
    settings: dict[str, object], words: str
) -> None:
    with pytest.raises(InvalidQueueError, match=words):
        Queue(name="limited", **settings)  # type: ignore[arg-type]


def test_limits_with_declare_limits_false_are_refused() -> None:
    with pytest.raises(InvalidQueueError, match="declare_limits=False"):
        Queue(name="limited", rate_limit=5, declare_limits=False)
