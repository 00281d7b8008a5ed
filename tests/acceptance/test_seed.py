"""The seed document's examples run verbatim: only the DSN changed, asyncio.run added."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from chancy.app import Chancy
from chancy.models import JobRow
from chancy.states import JobState

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SEED = HERE / "seed_jobs.rst"
SHARED_SEED = ROOT.parent / "shared" / "seeds" / "000_7f521308560d5cdc.txt"
SEED_DSN = "postgresql://localhost/postgres"


def code_blocks(text: str) -> list[str]:
    """The bodies of the document's ``.. code-block:: python`` directives."""
    blocks = []
    for match in re.finditer(
        r"\.\. code-block:: python\n((?:[ \t]+:.*\n)*)\n((?:[ \t]+.*\n|\n)+)", text
    ):
        blocks.append(textwrap.dedent(match.group(2)).strip() + "\n")
    return blocks


BLOCKS = code_blocks(SEED.read_text() + "\n")


def test_the_seed_has_three_examples() -> None:
    assert len(BLOCKS) == 3
    assert all("from chancy.executor import Job" in block for block in BLOCKS)


@pytest.mark.skipif(not SHARED_SEED.exists(), reason="the shared seed is not beside the repo")
def test_the_seed_copy_matches_the_shared_seed() -> None:
    assert SEED.read_text() == SHARED_SEED.read_text()


def run_as_job_py(block: str, dsn: str, directory: Path) -> subprocess.CompletedProcess[str]:
    assert SEED_DSN in block
    script = (
        block.replace(SEED_DSN, dsn) + '\nif __name__ == "__main__":\n    asyncio.run(main())\n'
    )
    (directory / "job.py").write_text(script)
    return subprocess.run(
        [sys.executable, "job.py"],
        cwd=directory,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


@pytest.mark.parametrize(
    ("index", "priorities"),
    [(0, [0]), (1, [0, 0, 10]), (2, [0, 10, -10])],
    ids=["creating-jobs", "reuse", "priority"],
)
async def test_seed_example_runs_and_stores_its_jobs(
    index: int, priorities: list[int], empty_database_url: URL, tmp_path: Path
) -> None:
    dsn = empty_database_url.set(drivername="postgresql").render_as_string(hide_password=False)
    done = run_as_job_py(BLOCKS[index], dsn, tmp_path)
    assert done.returncode == 0, done.stderr
    async with Chancy(empty_database_url) as chancy, chancy.engine.connect() as connection:
        rows = (
            await connection.execute(
                sa.select(JobRow.func, JobRow.kwargs, JobRow.priority, JobRow.queue).order_by(
                    JobRow.id
                )
            )
        ).all()
    assert [row.priority for row in rows] == priorities
    assert {(row.func, row.queue) for row in rows} == {("job.my_dummy_task", "default")}
    assert all(row.kwargs == {"name": "world"} for row in rows)


def test_a_process_started_beside_job_py_imports_and_runs_the_function(tmp_path: Path) -> None:
    run_as_job_py(BLOCKS[0], "postgresql://nowhere.invalid/x", tmp_path)  # writes job.py
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from chancy.callables import resolve; resolve('job.my_dummy_task')(name='world')",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Hello, world!\n"


def chancy_command() -> list[str]:
    """The installed ``chancy`` console script (its sys.path does not start with the current
    directory, unlike ``python -m chancy``), else the module."""
    script = Path(sys.executable).with_name("chancy")
    return [str(script)] if script.exists() else [sys.executable, "-m", "chancy"]


def start_worker(dsn: str, directory: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*chancy_command(), "worker", "--dsn", dsn, "-q", "default"],
        cwd=directory,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"},
    )


async def test_chancy_worker_started_beside_job_py_runs_the_seed_job(
    empty_database_url: URL, tmp_path: Path
) -> None:
    dsn = empty_database_url.set(drivername="postgresql").render_as_string(hide_password=False)
    pushed = run_as_job_py(BLOCKS[0], dsn, tmp_path)
    assert pushed.returncode == 0, pushed.stderr
    worker = start_worker(dsn, tmp_path)
    try:
        async with Chancy(empty_database_url) as chancy:
            async with chancy.engine.connect() as connection:
                (job_id,) = (await connection.execute(sa.select(JobRow.id))).scalars().all()
            job = await chancy.wait_for_job(job_id, timeout=60)
        assert job.state == JobState.SUCCEEDED, job.errors
    finally:
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert "Hello, world!\n" in out
