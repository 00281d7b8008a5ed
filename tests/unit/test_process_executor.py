"""The processes executor: jobs in child processes that timeouts, cancels and stop() kill."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import pytest

from chancy.executor.base import JobCrashedError, JobTimeoutError, RemoteJobError
from chancy.executor.processes import ProcessExecutor
from chancy.jobs import QueuedJob
from chancy.states import JobState
from chancy.worker import outcomes

pytestmark = pytest.mark.timeout(30)

TASKS = "tests.unit.process_tasks"
MIB = 2**20


def queued(func: str, timeout: float | None = None, **kwargs: Any) -> QueuedJob:
    return QueuedJob(
        id=1,
        func=f"{TASKS}.{func}",
        kwargs=kwargs,
        state=JobState.RUNNING,
        attempts=1,
        created_at=datetime.now(UTC),
        timeout=timeout,
    )


class PidPipe:
    """A named pipe that a :func:`sleeper` job writes its PID to. It is open for reading
    before the job starts, so the job never blocks on it and the PID waits in the pipe."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.path = path
        self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)

    async def read(self) -> int:
        loop = asyncio.get_running_loop()
        readable = loop.create_future()
        loop.add_reader(self._fd, readable.set_result, None)
        try:
            async with asyncio.timeout(10):
                await readable
        finally:
            loop.remove_reader(self._fd)
        return int(os.read(self._fd, 64))

    def close(self) -> None:
        os.close(self._fd)


def sleeper(pipe: PidPipe, timeout: float | None = None) -> QueuedJob:
    """A job that writes its PID to ``pipe``, then sleeps longer than any test lasts."""
    return queued("write_pid_then_sleep", timeout, path=str(pipe.path), seconds=60)


def gone(pid: int) -> bool:
    return not psutil.pid_exists(pid)


async def wait_gone(pid: int) -> None:
    """Return once process ``pid`` has ended and been reaped."""
    with contextlib.suppress(psutil.NoSuchProcess):
        await asyncio.to_thread(psutil.Process(pid).wait, 10)


@pytest.fixture
def pid_pipe(tmp_path: Path) -> Iterator[PidPipe]:
    pipe = PidPipe(tmp_path / "pid")
    yield pipe
    pipe.close()


@pytest.fixture
async def executor() -> AsyncIterator[ProcessExecutor]:
    executor = ProcessExecutor(2)
    await executor.start()
    yield executor
    await executor.stop()


async def test_run_returns_the_value(executor: ProcessExecutor) -> None:
    assert await executor.run(queued("add", a=2, b=3)) == 5


async def test_exception_comes_back_as_remote_job_error(executor: ProcessExecutor) -> None:
    with pytest.raises(RemoteJobError) as caught:
        await executor.run(queued("fail", message="boom"))
    assert caught.value.type_name == "ValueError"
    assert caught.value.message == "boom"
    assert "in fail" in caught.value.traceback_text


async def test_async_job_runs_to_completion(executor: ProcessExecutor) -> None:
    assert await executor.run(queued("add_async", a=2, b=3)) == 5


async def test_queued_job_parameter_receives_the_job(executor: ProcessExecutor) -> None:
    assert await executor.run(queued("job_id")) == 1


async def test_unpicklable_result_fails_with_remote_job_error(executor: ProcessExecutor) -> None:
    with pytest.raises(RemoteJobError, match=r"return value \(lock\) cannot be pickled"):
        await executor.run(queued("unpicklable"))


async def test_children_are_reused(executor: ProcessExecutor) -> None:
    first = await executor.run(queued("pid"))
    assert await executor.run(queued("pid")) == first


async def test_failed_job_keeps_its_child(executor: ProcessExecutor) -> None:
    first = await executor.run(queued("pid"))
    with pytest.raises(RemoteJobError):
        await executor.run(queued("fail", message="boom"))
    assert await executor.run(queued("pid")) == first


async def test_timeout_kills_the_child(executor: ProcessExecutor, pid_pipe: PidPipe) -> None:
    with pytest.raises(JobTimeoutError, match=r"timeout of 0\.5 s"):
        await executor.run(sleeper(pid_pipe, timeout=0.5))
    assert gone(await pid_pipe.read())


async def test_next_job_runs_after_a_timeout(executor: ProcessExecutor, pid_pipe: PidPipe) -> None:
    with pytest.raises(JobTimeoutError):
        await executor.run(sleeper(pid_pipe, timeout=0.5))
    assert await executor.run(queued("add", a=2, b=3)) == 5


async def test_cancelling_the_run_kills_the_child(
    executor: ProcessExecutor, pid_pipe: PidPipe
) -> None:
    run = asyncio.create_task(executor.run(sleeper(pid_pipe)))
    pid = await pid_pipe.read()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert gone(pid)


async def test_exit_is_reported_as_a_crash_with_its_code(executor: ProcessExecutor) -> None:
    with pytest.raises(JobCrashedError, match="exited with code 3"):
        await executor.run(queued("exit_with", code=3))


async def test_executor_keeps_working_after_a_crash(executor: ProcessExecutor) -> None:
    with pytest.raises(JobCrashedError):
        await executor.run(queued("exit_with", code=3))
    assert await executor.run(queued("add", a=2, b=3)) == 5


async def test_signal_is_reported_as_a_crash_naming_it(executor: ProcessExecutor) -> None:
    with pytest.raises(JobCrashedError, match="died with signal SIGKILL"):
        await executor.run(queued("kill_self"))


async def test_child_killed_while_idle_is_replaced(executor: ProcessExecutor) -> None:
    pid = await executor.run(queued("pid"))
    os.kill(pid, signal.SIGKILL)
    await wait_gone(pid)
    assert await executor.run(queued("pid")) != pid


async def test_memory_limit_fails_the_job_with_memory_error() -> None:
    executor = ProcessExecutor(1, memory_limit=256 * MIB)
    try:
        with pytest.raises(RemoteJobError) as caught:
            await executor.run(queued("allocate", size=1024 * MIB))
    finally:
        await executor.stop()
    assert caught.value.type_name == "MemoryError"


async def test_memory_limit_spares_the_executor() -> None:
    executor = ProcessExecutor(1, memory_limit=256 * MIB)
    try:
        with pytest.raises(RemoteJobError):
            await executor.run(queued("allocate", size=1024 * MIB))
        assert await executor.run(queued("allocate", size=MIB)) == MIB
    finally:
        await executor.stop()


def test_memory_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive number of bytes"):
        ProcessExecutor(1, memory_limit=0)


async def test_concurrency_bounds_parallelism(executor: ProcessExecutor) -> None:
    spans = await asyncio.gather(*(executor.run(queued("span", seconds=0.5)) for _ in range(4)))
    assert len(spans) == 4
    assert len({pid for pid, _, _ in spans}) <= 2
    running_at = [
        sum(1 for _, start, end in spans if start <= moment < end) for _, moment, _ in spans
    ]
    assert max(running_at) <= 2


async def test_stop_kills_idle_children(executor: ProcessExecutor) -> None:
    spans = await asyncio.gather(*(executor.run(queued("span", seconds=0.2)) for _ in range(2)))
    pids = {pid for pid, _, _ in spans}
    await executor.stop()
    assert len(pids) == 2
    assert all(gone(pid) for pid in pids)


async def test_stop_fails_runs_in_flight_with_job_crashed_error(
    executor: ProcessExecutor, pid_pipe: PidPipe
) -> None:
    run = asyncio.create_task(executor.run(sleeper(pid_pipe)))
    pid = await pid_pipe.read()
    await executor.stop()
    with pytest.raises(JobCrashedError, match="executor stopped"):
        await run
    assert gone(pid)


async def test_stop_twice_is_harmless(executor: ProcessExecutor) -> None:
    await executor.run(queued("pid"))
    await executor.stop()
    await executor.stop()


async def test_run_after_stop_starts_a_new_child(executor: ProcessExecutor) -> None:
    first = await executor.run(queued("pid"))
    await executor.stop()
    assert await executor.run(queued("pid")) != first


async def test_a_function_the_child_cannot_import_comes_back_as_not_importable(
    executor: ProcessExecutor,
) -> None:
    with pytest.raises(RemoteJobError) as caught:
        await executor.run(queued("no_such_function_h13"))
    assert caught.value.type_name == "FunctionNotImportableError"
    assert outcomes.is_not_importable(caught.value)
