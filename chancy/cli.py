"""The ``chancy`` command: parsing only; the work is done by the library.

::

    chancy migrate                 # upgrade the schema (DSN: --dsn, CHANCY_DSN, or embedded)
    chancy migrate --sql           # print the DDL instead, for a DBA
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import typer

from chancy import migrations
from chancy.app import Chancy
from chancy.errors import ChancyError

__all__ = ["app", "main"]

app = typer.Typer(
    name="chancy",
    help="chancy: a PostgreSQL job queue for Python.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DsnOption = Annotated[
    str | None,
    typer.Option(
        "--dsn",
        envvar="CHANCY_DSN",
        show_envvar=True,
        help="PostgreSQL DSN; without one, the embedded PostgreSQL is used.",
        show_default=False,
    ),
]


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at INFO.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("chancy").setLevel(logging.INFO)


@app.command()
def migrate(
    dsn: DsnOption = None,
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
    sql: Annotated[bool, typer.Option("--sql", help="Print the DDL and change nothing.")] = False,
) -> None:
    """Upgrade chancy's schema (safe to run from many processes at once)."""
    if sql:
        typer.echo(migrations.sql(revision))
        return

    async def run() -> None:
        async with Chancy(dsn) as chancy:
            await chancy.migrate(revision=revision)
            typer.echo(f"chancy schema at {await migrations.current(chancy.engine)}")

    asyncio.run(run())


def main() -> None:
    """Entry point of the ``chancy`` console script."""
    try:
        app()
    except ChancyError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
