"""The public surface: what `import chancy` offers, and the seed's import paths."""

from __future__ import annotations

import pickle
import subprocess
import sys

import chancy
from chancy.jobs import Job, queued_job_parameter


def test_all_is_pinned_and_sorted() -> None:
    assert chancy.__all__ == sorted(chancy.__all__)
    assert chancy.__all__ == [
        "Cancel",
        "Chancy",
        "ChancyError",
        "ConfigurationError",
        "CorruptJobError",
        "Cron",
        "DatabaseTimeoutError",
        "DatabaseUnavailableError",
        "FunctionNotAllowedError",
        "IncompatiblePayloadError",
        "InvalidFunctionError",
        "InvalidJobError",
        "InvalidKwargsError",
        "InvalidQueueError",
        "Job",
        "JobContext",
        "JobNotRunningError",
        "JobState",
        "LockTimeoutError",
        "PermissionDeniedError",
        "Queue",
        "QueueInfo",
        "QueuedJob",
        "Reference",
        "SchemaError",
        "Snooze",
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


def test_submodules_are_reachable_from_the_package() -> None:
    code = (
        "import chancy; "
        "print(chancy.executor.Job is chancy.Job, chancy.worker.Worker is chancy.Worker)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["True", "True"]


def test_the_earlier_path_of_the_job_values_still_imports_and_unpickles() -> None:
    from chancy.executor import job as earlier

    assert (earlier.Job, earlier.QueuedJob, earlier.Reference) == (
        chancy.Job,
        chancy.QueuedJob,
        chancy.Reference,
    )
    # A Job pickled when it lived in chancy.executor.job names that module's _rebuild.
    pickled = pickle.dumps(Job(func="tests.support.tasks.greet", kwargs={"name": "x"}), 0)
    earlier_pickle = pickled.replace(b"chancy.jobs", b"chancy.executor.job")
    assert b"chancy.executor.job" in earlier_pickle
    assert pickle.loads(earlier_pickle) == Job(
        func="tests.support.tasks.greet", kwargs={"name": "x"}
    )


def test_an_annotation_naming_the_earlier_path_still_receives_the_running_job() -> None:
    # A module of a user's that names the type under TYPE_CHECKING only: no chancy in its
    # namespace, so the annotation stays a string.
    source = (
        "from __future__ import annotations\n"
        "def report(*, job: chancy.executor.job.QueuedJob) -> None: pass\n"
    )
    namespace: dict[str, object] = {}
    exec(compile(source, "<tasks>", "exec", dont_inherit=True), namespace)
    assert queued_job_parameter(namespace["report"]) == "job"  # type: ignore[arg-type]
