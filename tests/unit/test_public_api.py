"""The public surface: what `import chancy` offers, and the seed's import paths."""

from __future__ import annotations

import chancy


def test_all_is_pinned_and_sorted() -> None:
    assert chancy.__all__ == sorted(chancy.__all__)
    assert chancy.__all__ == [
        "Chancy",
        "ChancyError",
        "ConfigurationError",
        "CorruptJobError",
        "Cron",
        "DatabaseTimeoutError",
        "DatabaseUnavailableError",
        "FunctionNotAllowedError",
        "InvalidFunctionError",
        "InvalidJobError",
        "InvalidKwargsError",
        "InvalidQueueError",
        "Job",
        "JobState",
        "LockTimeoutError",
        "PermissionDeniedError",
        "Queue",
        "QueueInfo",
        "QueuedJob",
        "Reference",
        "SchemaError",
        "StatementTimeoutError",
        "UnknownQueueError",
        "Worker",
    ]


def test_seed_import_paths() -> None:
    from chancy.app import Chancy
    from chancy.executor import Job
    from chancy.queue import Queue

    assert (Chancy, Job, Queue) == (chancy.Chancy, chancy.Job, chancy.Queue)


def test_every_error_is_a_chancy_error() -> None:
    errors = [getattr(chancy, name) for name in chancy.__all__ if name.endswith("Error")]
    assert all(issubclass(error, chancy.ChancyError) for error in errors)


def test_error_default_message_is_the_docstring_on_one_line() -> None:
    message = str(chancy.SchemaError())
    assert "\n" not in message
    assert "migrate" in message
