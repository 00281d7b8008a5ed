"""Naming job functions so that another process can import them again."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from chancy.allowed import UNRESTRICTED
from chancy.callables import is_job_function, name_of, resolve
from chancy.errors import CorruptJobError, InvalidFunctionError
from chancy.executor import Job
from chancy.executor.base import resolve_allowed
from tests.support import allowed_tasks, tasks

ROOT = Path(__file__).resolve().parents[2]


def test_name_round_trips_through_resolve() -> None:
    assert resolve(name_of(tasks.greet)) is tasks.greet
    assert resolve(name_of(tasks.Tasks.static)) is tasks.Tasks.static


def test_builtin_functions_are_named_by_their_module() -> None:
    import os

    assert resolve(name_of(os.getcwd)) is os.getcwd


def test_resolve_unknown_name_says_where_to_start_the_worker() -> None:
    with pytest.raises(InvalidFunctionError, match="start the worker where"):
        resolve("no_such_module_anywhere.task")


def test_resolve_does_not_hide_a_broken_import_inside_the_module(tmp_path: Path) -> None:
    (tmp_path / "broken_tasks.py").write_text("import no_such_dependency_xyz\ndef task(): pass\n")
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(ModuleNotFoundError, match="no_such_dependency_xyz"):
            resolve("broken_tasks.task")
    finally:
        sys.path.remove(str(tmp_path))


def run_script(tmp_path: Path, filename: str, body: str, *args: str) -> str:
    script = tmp_path / filename
    script.write_text(textwrap.dedent(body))
    done = subprocess.run(
        [sys.executable, *args] if args else [sys.executable, filename],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_function_in_a_script_is_named_after_the_script(tmp_path: Path) -> None:
    body = """
        from chancy.executor import Job

        def my_dummy_task(name: str):
            print(f"Hello, {name}!")

        if __name__ == "__main__":
            print(Job.from_func(my_dummy_task, kwargs={"name": "world"}).func)
    """
    assert run_script(tmp_path, "job.py", body) == "job.my_dummy_task"
    worker_side = run_script(
        tmp_path,
        "worker_side.py",
        "from chancy.callables import resolve\nresolve('job.my_dummy_task')(name='world')\n",
    )
    assert worker_side == "Hello, world!"


def test_function_in_a_module_run_with_dash_m_is_named_by_its_spec(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    body = """
        from chancy.executor import Job

        def task():
            pass

        print(Job.from_func(task).func)
    """
    assert run_script(tmp_path, "pkg/runner.py", body, "-m", "pkg.runner") == "pkg.runner.task"


def test_script_whose_name_is_not_importable_is_rejected(tmp_path: Path) -> None:
    body = """
        from chancy.executor import Job
        from chancy.errors import InvalidFunctionError

        def task():
            pass

        try:
            Job.from_func(task)
        except InvalidFunctionError as exc:
            print(exc)
    """
    assert "rename the file" in run_script(tmp_path, "my-job.py", body)


@pytest.mark.parametrize(
    ("fn", "name", "accepted"),
    [
        (tasks.greet, "tests.support.tasks.greet", True),
        (tasks.greet_async, "tests.support.tasks.greet_async", True),
        (tasks.Tasks.static, "tests.support.tasks.Tasks.static", True),
        (os.getcwd, "posix.getcwd", True),
        (tasks.Tasks, "tests.support.tasks.Tasks", False),
        (allowed_tasks.Spawner.spawn, "tests.support.allowed_tasks.Spawner.spawn", False),
        (allowed_tasks.call, "tests.support.allowed_tasks.call", False),
        (sys.stdout.write, "sys.stdout.write", False),
        (functools.partial(tasks.greet, name="x"), None, False),
    ],
    ids=[
        "function",
        "coroutine-function",
        "static-method",
        "builtin-function",
        "class",
        "class-method",
        "callable-instance",
        "builtin-bound-method",
        "partial",
    ],
)
def test_a_worker_calls_exactly_what_from_func_accepts(
    fn: object, name: str | None, accepted: bool
) -> None:
    """One rule at both ends: what ``Job.from_func`` refuses to store, a worker refuses to
    call when a row names it, whatever its ``allowed=``."""
    assert is_job_function(fn) is accepted
    if not accepted:
        with pytest.raises(InvalidFunctionError):
            Job.from_func(fn)  # type: ignore[arg-type]
    if name is None:
        return
    if accepted:
        assert name_of(fn) == name  # what Job.from_func stores
        assert resolve_allowed(name, UNRESTRICTED) is fn
    else:
        with pytest.raises(CorruptJobError, match="not a function"):
            resolve_allowed(name, UNRESTRICTED)


GUARD_HINT = 'guard the script\'s entry point with `if __name__ == "__main__":`'


@pytest.fixture
def script_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory on sys.path, as a worker's current directory is; its modules are
    forgotten afterwards."""
    before = set(sys.modules)
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for name in set(sys.modules) - before:
        del sys.modules[name]


SCRIPT_HEAD = """\
import asyncio
import pathlib


def task():
    return "ran"


async def main():
    pathlib.Path(__file__).with_name("main-ran").write_text("main ran")

"""


@pytest.mark.parametrize(
    "entry_point",
    [
        "asyncio.run(main())",
        "from asyncio import run as go\ngo(main())",
        "import asyncio as aio\nresult = aio.run(main())",
        "asyncio.new_event_loop().run_until_complete(main())",
        'if __name__ != "__main__":\n    pass\nelse:\n    pass\nasyncio.run(main())',
        "try:\n    asyncio.run(main())\nexcept KeyboardInterrupt:\n    pass",
    ],
    ids=["asyncio.run", "run-imported", "asyncio-aliased", "run_until_complete", "after-if", "try"],
)
def test_resolve_refuses_a_script_that_starts_its_event_loop_at_import_and_runs_none_of_it(
    script_dir: Path, entry_point: str
) -> None:
    (script_dir / "unguarded_job.py").write_text(SCRIPT_HEAD + entry_point + "\n")
    with pytest.raises(InvalidFunctionError) as raised:
        resolve("unguarded_job.task")
    assert GUARD_HINT in str(raised.value)
    assert "unguarded_job.py" in str(raised.value)
    assert not (script_dir / "main-ran").exists()
    assert "unguarded_job" not in sys.modules


@pytest.mark.parametrize(
    "entry_point",
    [
        'if __name__ == "__main__":\n    asyncio.run(main())',
        'if "__main__" == __name__:\n    asyncio.run(main())',
        "def cli():\n    asyncio.run(main())",
        "class Runner:\n    def go(self):\n        asyncio.run(main())",
        "go = lambda: asyncio.run(main())",
    ],
    ids=["guarded", "guarded-reversed", "in-a-function", "in-a-method", "in-a-lambda"],
)
def test_resolve_imports_a_script_whose_event_loop_starts_only_when_run(
    script_dir: Path, entry_point: str
) -> None:
    (script_dir / "guarded_job.py").write_text(SCRIPT_HEAD + entry_point + "\n")
    assert resolve("guarded_job.task")() == "ran"
    assert not (script_dir / "main-ran").exists()


async def test_resolve_on_a_running_loop_names_the_guard_for_an_entry_point_it_cannot_see(
    script_dir: Path,
) -> None:
    """An event loop started by a function the module calls at import is not visible in
    the module's own statements; on a running loop, asyncio's own error is turned into the
    same hint."""
    body = SCRIPT_HEAD + "def start():\n    asyncio.run(main())\n\n\nstart()\n"
    (script_dir / "indirect_job.py").write_text(body)
    with (
        pytest.warns(RuntimeWarning, match="never awaited"),
        pytest.raises(InvalidFunctionError, match="indirect_job") as raised,
    ):
        resolve("indirect_job.task")
    assert GUARD_HINT in str(raised.value)
