"""From an installed wheel, with no checkout in sight, `Chancy.migrate()` finds its scripts."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from chancy import migrations
from chancy.database import create_engine

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if done.returncode != 0:
        pytest.fail(f"building the wheel failed:\n{done.stderr}")
    (path,) = out.glob("chancy-*.whl")
    return path


def test_wheel_ships_the_migrations_and_py_typed(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "chancy/py.typed" in names
    assert "chancy/_alembic/env.py" in names
    assert "chancy/_alembic/script.py.mako" in names
    assert any(n.startswith("chancy/_alembic/versions/chancy_0001") for n in names)


@pytest.mark.slow
async def test_migrate_from_the_installed_wheel(
    wheel: Path, empty_database_url: URL, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    dsn = empty_database_url.render_as_string(hide_password=False)
    program = textwrap.dedent(f"""
        import asyncio, chancy
        from chancy.app import Chancy
        assert chancy.__file__.startswith({str(site)!r}), chancy.__file__

        async def main():
            async with Chancy({dsn!r}) as app:
                await app.migrate()

        asyncio.run(main())
    """)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", program],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(site)},
    )
    assert done.returncode == 0, done.stderr
    engine = create_engine(empty_database_url)
    try:
        assert await migrations.current(engine) == migrations.head()
    finally:
        await engine.dispose()
