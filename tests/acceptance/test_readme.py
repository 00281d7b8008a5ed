"""README.md runs as written: its shell and Python blocks, literally, in order.

The blocks run one after the other in one temporary directory, with ``CHANCY_DSN`` naming
a fresh database on the suite's server (``CHANCY_TEST_DSN``'s, or the embedded one), so
every block that names no DSN (as the README's do) uses the same database, as a user's
would without ``CHANCY_DSN``: the embedded server.

Which blocks run is marked in the README by an HTML comment on the line right before a
fenced block (GitHub does not show it):

- A ```` ```bash ```` or ```` ```python ```` block with no marker runs: a bash block with
  ``bash -e``, a Python block saved as a script and run with ``python``; it must exit 0.
  Blocks in other languages (```` ```text ````) are output, never run.
- ``<!-- not run: REASON -->``: not run, for the reason given (an install, the whole
  suite, a fragment of a larger program, a server or module of your own).
- ``<!-- file: NAME -->``: saved as ``NAME`` in the directory, for later blocks to run.
- ``<!-- run until: TEXT -->``: a bash block whose last command runs until it is stopped
  (a worker): once ``TEXT`` is in its output it gets SIGINT (Ctrl-C), and must exit 0.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from chancy.app import Chancy
from chancy.models import JobRow
from chancy.states import JobState
from tests.support.servers import asyncpg_dsn, create_database, drop_database, unique_database_name
from tests.support.waiting import until_async

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
RUN_TIMEOUT = 120.0  # seconds any one block may take; the README's take a few each

BLOCK = re.compile(
    r"(?:^[ \t]*<!--\s*(?P<marker>[a-z ]+):\s*(?P<argument>[^\n]*?)\s*-->\n)?"
    r"^(?P<indent>[ \t]*)```(?P<language>[\w-]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
RUNNABLE = {"bash", "python"}
MARKERS = {"not run", "file", "run until"}
UNRESTRICTED_WARNING = "runs any importable function"


@dataclass(frozen=True)
class Block:
    line: int
    language: str
    marker: str | None
    argument: str
    body: str

    def __str__(self) -> str:
        return f"README.md line {self.line} ({self.language})"


def readme_blocks() -> list[Block]:
    text = README.read_text()
    blocks = []
    for match in BLOCK.finditer(text):
        indent = match["indent"]
        body = "".join(line.removeprefix(indent) + "\n" for line in match["body"].splitlines())
        blocks.append(
            Block(
                line=text.count("\n", 0, match.start("indent")) + 1,
                language=match["language"],
                marker=match["marker"],
                argument=match["argument"] or "",
                body=body,
            )
        )
    return blocks


@dataclass
class Ran:
    block: Block
    returncode: int
    output: str


def environment(dsn: str) -> dict[str, str]:
    """The user's shell: chancy's commands on PATH, the worktree's chancy importable, the
    one database in CHANCY_DSN, output unbuffered (so a worker's prints show at once)."""
    bin_dir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
        "CHANCY_DSN": dsn,
    }


def run_to_the_end(block: Block, command: list[str], directory: Path, env: dict[str, str]) -> Ran:
    done = subprocess.run(
        command,
        cwd=directory,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
        timeout=RUN_TIMEOUT,
    )
    return Ran(block, done.returncode, done.stdout)


def run_until(block: Block, directory: Path, env: dict[str, str]) -> Ran:
    """Run ``block`` until ``block.argument`` is in its output, then Ctrl-C its processes."""
    process = subprocess.Popen(
        ["bash", "-e", "-c", block.body],
        cwd=directory,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []
    seen = threading.Event()

    def read(stream: IO[str]) -> None:
        for line in stream:
            output.append(line)
            if block.argument in line:
                seen.set()
        seen.set()  # the block ended by itself: stop waiting

    assert process.stdout is not None
    reader = threading.Thread(target=read, args=(process.stdout,), daemon=True)
    reader.start()
    try:
        seen.wait(timeout=RUN_TIMEOUT)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
        returncode = process.wait(timeout=RUN_TIMEOUT)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        reader.join(timeout=10)
        process.stdout.close()
    text = "".join(output)
    assert block.argument in text, f"{block} never printed {block.argument!r}:\n{text}"
    return Ran(block, returncode, text)


def run_blocks(directory: Path, dsn: str) -> list[Ran]:
    env = environment(dsn)
    ran = []
    for index, block in enumerate(readme_blocks()):
        if block.language not in RUNNABLE or block.marker == "not run":
            continue
        if block.marker == "file":
            (directory / block.argument).write_text(block.body)
            continue
        if block.marker == "run until":
            ran.append(run_until(block, directory, env))
        elif block.language == "bash":
            ran.append(run_to_the_end(block, ["bash", "-e", "-c", block.body], directory, env))
        else:
            script = directory / f"readme_block_{index}.py"
            script.write_text(block.body)
            ran.append(run_to_the_end(block, [sys.executable, script.name], directory, env))
    return ran


@pytest.fixture(scope="module")
def readme_database(server_url: URL) -> Iterator[URL]:
    name = unique_database_name("chancy_readme")
    url = asyncio.run(create_database(server_url, name))
    yield url
    asyncio.run(drop_database(server_url, name))


@pytest.fixture(scope="module")
def readme_run(readme_database: URL, tmp_path_factory: pytest.TempPathFactory) -> list[Ran]:
    """Every block meant to run, run once for the tests of this module."""
    directory = tmp_path_factory.mktemp("readme")
    return run_blocks(directory, asyncpg_dsn(readme_database))


def test_every_block_is_bash_python_or_output_and_every_marker_is_known() -> None:
    blocks = readme_blocks()
    assert {block.language for block in blocks} <= {*RUNNABLE, "text"}
    assert {block.marker for block in blocks} <= {*MARKERS, None}
    assert all(block.argument for block in blocks if block.marker), "a marker needs its reason"


def test_every_block_meant_to_run_exits_cleanly(readme_run: list[Ran]) -> None:
    assert len(readme_run) >= 3
    for ran in readme_run:
        assert ran.returncode == 0, f"{ran.block} exited {ran.returncode}:\n{ran.output}"


def test_the_worker_step_runs_the_jobs_job_py_pushed(readme_run: list[Ran]) -> None:
    (worker_step,) = [ran for ran in readme_run if ran.block.marker == "run until"]
    assert "python job.py" in worker_step.block.body
    assert "Hello, world!" in worker_step.output


async def test_every_job_the_readme_pushed_ran_in_its_one_database(
    readme_run: list[Ran], readme_database: URL
) -> None:
    async with Chancy(readme_database) as chancy, chancy.engine.connect() as connection:
        rows = (await connection.execute(sa.select(JobRow.func, JobRow.state))).all()
    assert {row.func for row in rows} >= {"job.my_dummy_task"}
    assert {row.state for row in rows if row.func == "job.my_dummy_task"} == {JobState.SUCCEEDED}


def test_no_worker_the_readme_starts_runs_any_importable_function(readme_run: list[Ran]) -> None:
    for ran in readme_run:
        assert UNRESTRICTED_WARNING not in ran.output, f"{ran.block}:\n{ran.output}"


def start_worker(directory: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """`chancy worker -q default`, started in ``directory`` (no --allow: any function)."""
    return subprocess.Popen(
        [sys.executable, "-m", "chancy", "worker", "-q", "default"],
        cwd=directory,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def unguarded(job_py: str) -> str:
    """The README's job.py with its entry point not guarded, as scripts often are."""
    guarded = 'if __name__ == "__main__":'
    head, _, tail = job_py.partition(guarded)
    assert tail, "the README's job.py guards its entry point"
    return head + tail.split("\n", 1)[1].strip() + "\n"


async def test_a_worker_refuses_a_job_script_with_an_unguarded_entry_point_and_runs_none_of_it(
    empty_database_url: URL, tmp_path: Path
) -> None:
    (job_py,) = [block.body for block in readme_blocks() if block.argument == "job.py"]
    (tmp_path / "job.py").write_text(unguarded(job_py))
    env = environment(asyncpg_dsn(empty_database_url))
    pushed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "job.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=RUN_TIMEOUT,
    )
    assert pushed.returncode == 0, pushed.stderr
    worker = await asyncio.to_thread(start_worker, tmp_path, env)
    try:
        async with Chancy(empty_database_url) as chancy:
            async with chancy.engine.connect() as connection:
                first = await connection.scalar(sa.select(sa.func.min(JobRow.id)))
            assert first is not None

            async def deferred() -> bool:
                stored = await chancy.get_job(first)
                return stored is not None and any(e.get("deferred") for e in stored.errors)

            # Its module cannot be imported as it is: the job waits for a worker that can
            # (a fixed script), without using an attempt.
            await until_async(deferred, timeout=60, what="the job to be deferred")
            job = await chancy.get_job(first)
            assert job is not None
            async with chancy.engine.connect() as connection:
                count = await connection.scalar(sa.select(sa.func.count()).select_from(JobRow))
    finally:
        worker.send_signal(signal.SIGINT)
        output, _ = await asyncio.to_thread(worker.communicate, timeout=RUN_TIMEOUT)
    assert (job.state, job.attempts) == (JobState.SCHEDULED, 0), output
    assert 'guard the script\'s entry point with `if __name__ == "__main__":`' in str(
        job.errors[-1]["message"]
    )
    assert count == 3  # the script's main() did not run again inside the worker
    assert "Hello, world!" not in output
