"""The ``chancy`` command: parsing only; the work is done by the library.

::

    chancy migrate                 # upgrade the schema (DSN: --dsn, CHANCY_DSN, or embedded)
    chancy migrate --sql [--from base]   # print the DDL the database lacks (or all of it)
    chancy worker --app myapp:chancy [--queue q ...] [--concurrency N] [--allow 'myapp.*']
                  [--alias myapp.old_name=myapp.tasks.new_name]
    chancy worker -q q --declare   # a queue that is not declared yet (else refused)
    chancy grants --role NAME      # print the GRANTs of a role that pushes and runs jobs
    chancy push --queue q myapp.tasks:send --kwargs '{"to": "a@b.c"}'   # prints the job id
    chancy job show ID [--json]    # the job, its errors and their tracebacks
    chancy job retry ID            # put a failed or cancelled job back in its queue
    chancy job retry --state failed [--queue q]   # ... every failed (or cancelled) job
    chancy job cancel ID           # cancel an unfinished job
    chancy queue list              # declared queues, paused or not, and their limits
    chancy queue declare|pause|resume NAME
    chancy queue delete NAME [--force]   # an empty queue; --force: with its jobs
    chancy demo [--jobs N] [--concurrency N]   # push, run and measure demo jobs
    chancy --version; chancy COMMAND -v   # -v: your jobs' logs, and an error's traceback
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import difflib
import importlib
import importlib.metadata
import itertools
import json
import logging
import os
import re
import shlex
import signal
import sys
import sysconfig
import threading
import traceback
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from typer.core import TyperArgument, TyperCommand, TyperGroup

from chancy import migrations
from chancy.allowed import AllowedFunctions
from chancy.app import Chancy
from chancy.callables import GUARD_HINT, resolve
from chancy.database.dsn import DSN_ENV
from chancy.demo import (
    DEMO_CONCURRENCY_DEFAULT,
    DEMO_JOBS_DEFAULT,
    REPORT_NOTES,
    report_table,
    run_demo,
)
from chancy.errors import (
    ChancyError,
    ConfigurationError,
    InvalidFunctionError,
    InvalidJobError,
    InvalidKwargsError,
    InvalidQueueError,
    UnknownQueueError,
)
from chancy.grants import GRANTS_SCHEMA_DEFAULT, grants_sql
from chancy.jobs import MAX_ATTEMPTS_DEFAULT, PRIORITY_DEFAULT, QUEUE_DEFAULT, Job, QueuedJob
from chancy.models import JobRow
from chancy.payloads import masked
from chancy.queue import Queue
from chancy.states import JobState
from chancy.worker import Worker, WorkerSettings
from chancy.worker.settings import WORKER_SETTINGS_DEFAULT

__all__ = ["app", "main"]

HELP_WIDTH_MAX = 160
"""Help fills the terminal up to this width (click's default stops at 80)."""
_VERBOSE = "chancy.verbose"
"""The key of ``ctx.meta`` that says ``-v`` was given: an error's cause is printed whole."""
_VERBOSE_FLAGS = ("-v", "--verbose")
_DSN_GIVEN = "chancy.dsn_given"
"""The key of ``ctx.meta`` (shared by a command's nested contexts) under which the DSN
given with ``--dsn`` is kept, for the hints of errors (not set for ``CHANCY_DSN``)."""


def hint_dsn(dsn: str | None) -> str | None:
    """``dsn`` as a hint shows it, shell-quoted, with every password masked as ``***``;
    ``<your DSN>`` if it does not parse (or might hide a password in its host)."""
    if dsn is None:
        return None
    if dsn.count("@") > 1:
        return "<your DSN>"
    try:
        url = make_url(dsn)
    except (ArgumentError, ValueError):
        return "<your DSN>"
    query = {key: "***" if "password" in key.lower() else value for key, value in url.query.items()}
    masked = url.set(password="***" if url.password else None, query=query)
    # The URL writes its password and query URL-quoted: put the stars back.
    return shlex.quote(masked.render_as_string(hide_password=False).replace("%2A", "*"))


def for_the_command_line(message: str, dsn: str | None) -> str:
    """A library error's ``message`` with its hints in the command's terms: ``--dsn`` (with
    the one given, password masked) and ``--declare`` instead of ``dsn=`` and
    ``declare=True``, and the ``chancy`` command that fixes it instead of the call, on
    the database given (``chancy migrate``, ``chancy queue declare|delete``)."""
    with_dsn = f" --dsn {hint_dsn(dsn)}" if dsn else ""
    migrate = f"`chancy migrate{with_dsn}`"
    for api, command in (
        ("dsn=, engine= or CHANCY_DSN", "--dsn or CHANCY_DSN"),
        ("pass dsn= or engine=, or set CHANCY_DSN", "pass --dsn or set CHANCY_DSN"),
        ("`await chancy.migrate()` or `chancy migrate` (or `alembic upgrade head`)", migrate),
        ("`await chancy.migrate()` or `chancy migrate`", migrate),
        ("(`chancy migrate`, `await chancy.migrate()`)", f"({migrate})"),
        ("or push with declare=True", "or push with --declare"),
    ):
        message = message.replace(api, command)
    message = re.sub(
        r"call `await chancy\.declare\(Queue\(name='([^']*)'\)\)`",
        r"run `chancy queue declare \1`",
        message,
    )
    message = message.replace("with the queue with force=True (`", "with the queue (`")
    return re.sub(
        r"`(chancy queue (?:declare|delete) [^`]*)`",
        lambda match: f"`{match[1]}{with_dsn}`",
        message,
    )


class _CommandLineGroup(TyperGroup):
    """The ``chancy`` command: a :class:`ChancyError` leaves it with its hints rewritten
    by :func:`for_the_command_line` (``main`` prints it; a test sees the error)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """Take ``-v`` anywhere before ``--``: it belongs to the ``chancy`` command, and
        users put it after the subcommand (``chancy worker -v``)."""
        end = args.index("--") if "--" in args else len(args)
        verbose = [arg for arg in args[:end] if arg in _VERBOSE_FLAGS]
        rest = [arg for arg in args[:end] if arg not in _VERBOSE_FLAGS] + args[end:]
        return super().parse_args(ctx, verbose[:1] + rest)

    def invoke(self, ctx: Any) -> Any:  # a click Context (typer vendors click privately)
        try:
            return super().invoke(ctx)
        except ChancyError as exc:
            exc.args = (for_the_command_line(str(exc), ctx.meta.get(_DSN_GIVEN)),)
            if ctx.meta.get(_VERBOSE) and exc.__cause__ is not None:
                traceback.print_exception(exc.__cause__)
            raise


class _Command(TyperCommand):
    """A ``chancy`` subcommand whose help names an argument as its usage line does
    (``ID``, ``[ID]``), without the Python type typer appends (``ID <int>``)."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                pieces.append(_argument_name(param))
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces

    def format_options(self, ctx: Any, formatter: Any) -> None:
        arguments: list[tuple[str, str]] = []
        options: list[tuple[str, str]] = []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if isinstance(param, TyperArgument):
                arguments.append((_argument_name(param), record[1]))
            else:
                options.append(record)
        for title, records in (("Arguments", arguments), ("Options", options)):
            if records:
                with formatter.section(title):
                    formatter.write_dl(records)


def _argument_name(argument: TyperArgument) -> str:
    """``NAME``, ``[NAME]`` when optional, with ``...`` when it takes many; a metavar
    already in brackets is kept as it is."""
    name = argument.metavar or (argument.name or "").upper()
    if not argument.required and not name.startswith("["):
        name = f"[{name}]"
    return f"{name}..." if argument.nargs != 1 else name


def _remember_dsn(ctx: typer.Context, value: str | None) -> str | None:
    """Keep a DSN given with ``--dsn`` for the hints (one from ``CHANCY_DSN`` needs no
    ``--dsn`` in them: the variable is set)."""
    if value is not None and value != os.environ.get(DSN_ENV):
        ctx.meta[_DSN_GIVEN] = value
    return value


app = typer.Typer(
    name="chancy",
    cls=_CommandLineGroup,
    help="chancy: a PostgreSQL job queue for Python.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # click's help: paragraphs reflow, values named by metavars
    context_settings={"max_content_width": HELP_WIDTH_MAX},
)

DsnOption = Annotated[
    str | None,
    typer.Option(
        "--dsn",
        metavar="DSN",
        envvar=DSN_ENV,
        show_envvar=True,
        help="PostgreSQL DSN; without one, the embedded PostgreSQL is used.",
        show_default=False,
        callback=_remember_dsn,
    ),
]


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"chancy {importlib.metadata.version('chancy')}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Also show your jobs' logs and the libraries' (INFO and up; chancy's own "
            "are always shown), and an error's traceback. Goes before or after the command.",
        ),
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print chancy's version and exit.",
            is_eager=True,
            callback=_print_version,
        ),
    ] = False,
) -> None:
    ctx.meta[_VERBOSE] = verbose
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("chancy").setLevel(logging.INFO)


@app.command(cls=_Command)
def migrate(
    dsn: DsnOption = None,
    revision: Annotated[str, typer.Option(metavar="REVISION", help="Target revision.")] = "head",
    sql: Annotated[
        bool,
        typer.Option(
            "--sql",
            help="Print the DDL the database still lacks, and change nothing (a database of "
            "--dsn or CHANCY_DSN is read; without one, the whole DDL).",
        ),
    ] = False,
    start: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="REVISION",
            help="With --sql: print the DDL from this revision on, without reading the "
            "database; base for the whole DDL.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Upgrade chancy's schema (safe to run from many processes at once)."""
    if sql:
        typer.echo(pending_ddl(dsn, revision, start))
        return

    async def run() -> None:
        async with Chancy(dsn) as chancy:
            await chancy.migrate(revision=revision)
            typer.echo(f"chancy schema at {await migrations.current(chancy.engine)}")

    asyncio.run(run())


def pending_ddl(dsn: str | None, revision: str, start: str | None) -> str:
    """The DDL from ``start`` (default: the revision of the database at ``dsn``; without a
    DSN, or at ``base``: from nothing) to ``revision``."""
    if start is None and dsn is not None:
        start = with_chancy(None, dsn, lambda chancy: migrations.current(chancy.engine))
        target = migrations.head() if revision == "head" else revision
        if start == target:
            return f"-- chancy's schema is at {start} already: nothing to apply"
    return migrations.sql(revision, start=None if start == "base" else start)


@app.command(cls=_Command)
def grants(
    role: Annotated[
        str,
        typer.Option(
            "--role", metavar="NAME", help="The role that pushes and runs jobs.", show_default=False
        ),
    ],
    schema: Annotated[
        str, typer.Option(metavar="SCHEMA", help="The schema of chancy's tables.")
    ] = GRANTS_SCHEMA_DEFAULT,
) -> None:
    """Print the GRANTs that let a role push and run jobs, and nothing more (no schema
    changes); apply them as the owner of chancy's tables, again after each migration."""
    try:
        typer.echo(grants_sql(role, schema=schema), nl=False)
    except ChancyError as exc:
        raise typer.BadParameter(str(exc)) from exc


AppOption = Annotated[
    str | None,
    typer.Option(
        "--app",
        metavar="MODULE:ATTRIBUTE",
        help="Where your Chancy instance is, as module:attribute (imported from the "
        "current directory, as uvicorn and celery do). Default attribute: chancy.",
        show_default=False,
    ),
]


def import_from_cwd() -> None:
    """Let jobs, ``--app`` and ``MODULE:FUNCTION`` import from the current directory, as
    ``python -m`` does (the installed ``chancy`` script's path does not include it)."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


def load_app(path: str) -> Chancy:
    """Import ``module:attribute`` (a Chancy, or a function returning one)."""
    module_name, _, attribute = path.partition(":")
    import_from_cwd()
    try:
        with contextlib.redirect_stdout(sys.stderr):  # the command's output is its own
            module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ChancyError(f"cannot import {module_name!r} for --app ({exc})") from exc
    except (Exception, SystemExit) as exc:  # the module's own code failed: say which, and how
        raise ChancyError(
            f"cannot import {module_name!r} for --app: {_import_failure(exc)} "
            "(-v shows the traceback)"
        ) from exc
    target = getattr(module, attribute or "chancy", None)
    if callable(target) and not isinstance(target, Chancy):
        target = target()
    if not isinstance(target, Chancy):
        raise ChancyError(
            f"--app {path}: expected a Chancy instance at {module_name}:{attribute or 'chancy'}"
        )
    return target


def _import_failure(exc: BaseException) -> str:
    """Why importing a module failed, when its own code raised ``exc`` or exited."""
    if isinstance(exc, SystemExit):
        return f"it exits when imported ({exc!r}); if it is a script, {GUARD_HINT}"
    return f"{type(exc).__name__}: {exc}"


WORKER_CONCURRENCY_DEFAULT = 10
"""Jobs at once per queue of ``chancy worker`` for a queue the app does not configure (and
every queue without ``--app``); a queue of the app runs its ``Queue(concurrency=)``."""


def select_queues(chancy: Chancy, names: list[str], concurrency: int | None) -> list[Queue]:
    """The queues a worker runs: those named in ``names``, else all of the app's, else
    ``default``. A queue the app configures keeps its settings; another gets default
    settings that state no limits (the worker leaves the stored ones as they are) and
    :data:`WORKER_CONCURRENCY_DEFAULT`. ``concurrency``, if given, applies to all."""
    configured = {queue.name: queue for queue in chancy.queues}
    queues = [configured.get(name) or _unconfigured(name) for name in names] or list(chancy.queues)
    if not queues:
        queues = [_unconfigured(QUEUE_DEFAULT)]
    if concurrency is not None:
        queues = [dataclasses.replace(queue, concurrency=concurrency) for queue in queues]
    return queues


def _unconfigured(name: str) -> Queue:
    return dataclasses.replace(Queue.named(name), concurrency=WORKER_CONCURRENCY_DEFAULT)


@app.command(cls=_Command)
def worker(
    app_path: AppOption = None,
    dsn: DsnOption = None,
    queue: Annotated[
        list[str] | None,
        typer.Option(
            "--queue",
            "-q",
            metavar="NAME",
            help="Run this queue (repeatable). Default: the app's queues with --app, else "
            "the queue default.",
        ),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Jobs at once per queue, for every queue run. Default: the app's "
            f"Queue(concurrency=) for its queues, else {WORKER_CONCURRENCY_DEFAULT}.",
            show_default=False,
        ),
    ] = None,
    lease_seconds: Annotated[
        float,
        typer.Option(
            metavar="SECONDS", help="Seconds a job stays this worker's without a heartbeat."
        ),
    ] = WORKER_SETTINGS_DEFAULT.lease_seconds,
    shutdown_timeout: Annotated[
        float,
        typer.Option(
            metavar="SECONDS", help="Seconds running jobs get to finish on SIGTERM/SIGINT."
        ),
    ] = WORKER_SETTINGS_DEFAULT.shutdown_timeout,
    rescue_interval: Annotated[
        float,
        typer.Option(
            metavar="SECONDS", help="Seconds between the leader's checks for expired leases."
        ),
    ] = WORKER_SETTINGS_DEFAULT.rescue_interval,
    leader_ttl: Annotated[
        float,
        typer.Option(
            metavar="SECONDS", help="Seconds the leader's lease lasts: how soon another takes over."
        ),
    ] = WORKER_SETTINGS_DEFAULT.leader_ttl,
    durable_claims: Annotated[
        bool,
        typer.Option(
            "--durable-claims",
            help="Wait for each claim's commit to reach the disk. Default: claims commit "
            "asynchronously (a claim lost in a server crash only lets its job run again "
            "after the crash, under a new fencing token); outcomes are always durable.",
        ),
    ] = WORKER_SETTINGS_DEFAULT.durable_claims,
    declare: Annotated[
        bool,
        typer.Option(
            "--declare",
            help="Declare the --queue queues that are not declared yet; without it, the "
            "worker refuses to start on one (a typo would idle forever).",
        ),
    ] = False,
    allow: Annotated[
        list[str] | None,
        typer.Option(
            "--allow",
            metavar="PATTERN",
            help="Run only functions whose dotted name matches this glob, such as "
            "'myapp.tasks.*' (repeatable); replaces the app's allowed=. Default: the app's "
            "allowed=, else any importable function.",
        ),
    ] = None,
    alias: Annotated[
        list[str] | None,
        typer.Option(
            "--alias",
            metavar="OLD=NEW",
            help="Run the function NEW for jobs stored under the name OLD (a renamed "
            "function), allowed under NEW (repeatable); added to the app's aliases=.",
        ),
    ] = None,
) -> None:
    """Run jobs until SIGTERM or SIGINT (a second signal stops at once)."""
    aliases = parse_aliases(alias or [])
    settings = WorkerSettings(
        lease_seconds=lease_seconds,
        shutdown_timeout=shutdown_timeout,
        rescue_interval=rescue_interval,
        leader_ttl=leader_ttl,
        durable_claims=durable_claims,
    )
    import_from_cwd()  # the jobs' modules, as for the script beside them that pushed them
    # Without an app, the worker knows no schedules: it leaves the stored ones alone.
    chancy = load_app(app_path) if app_path else Chancy(dsn, prune_schedules=False)
    queues = select_queues(chancy, queue or [], concurrency)

    async def run() -> None:
        async with chancy:
            await check_declared(chancy, queues, declare=declare)
            worker = Worker(
                chancy, queues=queues, allowed=allow or None, aliases=aliases, settings=settings
            )
            await worker.run_until_signalled()
            # Stopped: a further signal ends the process at once, with no traceback.
            for number in (signal.SIGINT, signal.SIGTERM):
                signal.signal(number, lambda _number, _frame: os._exit(1))
            if worker.running:
                exit_now(worker)

    asyncio.run(run())
    abandoned = [
        t for t in threading.enumerate() if t.name.startswith("chancy-job") and t.is_alive()
    ]
    if abandoned:
        # Calls of jobs that timed out or were cancelled go on in their threads, and
        # Python would wait for them at exit: their outcomes are written, so end them.
        logging.getLogger("chancy").info(
            "not waiting for %d abandoned threads of jobs that timed out or were cancelled",
            len(abandoned),
        )
        _exit(0)


def parse_aliases(given: list[str]) -> dict[str, str]:
    """``--alias OLD=NEW`` options as a mapping, or a usage error naming the bad one."""
    aliases: dict[str, str] = {}
    for text in given:
        old, equals, new = text.partition("=")
        if not equals or not old.strip() or not new.strip():
            raise typer.BadParameter(
                f"{text!r} is not OLD=NEW; write --alias myapp.old_name=myapp.tasks.new_name",
                param_hint="'--alias'",
            )
        aliases[old.strip()] = new.strip()
    try:
        AllowedFunctions.of(None, aliases=aliases)
    except ConfigurationError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--alias'") from exc
    return aliases


async def check_declared(chancy: Chancy, queues: list[Queue], *, declare: bool) -> None:
    """Raise :class:`UnknownQueueError`, naming the closest declared queue, for a queue of
    ``queues`` that is neither declared nor configured in the app, unless ``declare``."""
    if declare:
        return
    known = {info.name for info in await chancy.list_queues()} | {q.name for q in chancy.queues}
    for name in [queue.name for queue in queues if queue.name not in known]:
        close = difflib.get_close_matches(name, sorted(known), n=1)
        hint = f"did you mean {close[0]!r}? If not, " if close else ""
        raise UnknownQueueError(
            f"queue {name!r} is not declared; {hint}declare it with `chancy queue declare "
            f"{name}`, or start the worker with --declare"
        )


def exit_now(worker: Worker) -> None:
    """End the process at once, after a second signal left jobs running in threads: Python
    cannot stop a thread, and would wait for them at exit while nobody renews their
    leases. Exiting ends them; their leases expire, then the rescuer makes them ready
    again if they have attempts left, else fails them (``LeaseExpired``)."""
    logging.getLogger("chancy").error(
        "exiting now with %s still running in threads: the exit ends them; once their "
        "leases expire (in at most %g s) they run again if they have attempts left, "
        "else they fail",
        worker.describe_running(),
        worker.settings.lease_seconds,
    )
    _exit(1)


def _exit(code: int) -> None:
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


T = TypeVar("T")


def with_chancy(
    app_path: str | None, dsn: str | None, action: Callable[[Chancy], Awaitable[T]]
) -> T:
    """Run ``action`` on the app's Chancy (``--app``) or one on ``--dsn``, opened for it."""
    chancy = load_app(app_path) if app_path else Chancy(dsn)

    async def run() -> T:
        async with chancy:
            return await action(chancy)

    return asyncio.run(run())


def import_function(name: str) -> Callable[..., Any]:
    """The function ``module:function`` (or ``module.function``), imported from the
    current directory as ``--app`` is."""
    import_from_cwd()
    try:
        with contextlib.redirect_stdout(sys.stderr):  # the command's output is its own
            return resolve(name.replace(":", "."))
    except InvalidFunctionError as exc:  # not found, or a script that runs at import
        raise _unimportable(
            name, str(exc) if GUARD_HINT in str(exc) else "no such module or function"
        ) from exc
    except ImportError as exc:
        raise _unimportable(name, str(exc)) from exc
    except (Exception, SystemExit) as exc:  # the module's own code failed, or exited
        raise _unimportable(name, _import_failure(exc)) from exc


def _unimportable(name: str, cause: str) -> typer.BadParameter:
    return typer.BadParameter(
        f"cannot import {name!r} ({cause}); give module:function, importable from the "
        "current directory or the virtualenv",
        param_hint="'MODULE:FUNCTION'",
    )


def parse_kwargs(text: str) -> dict[str, Any]:
    """``--kwargs``: a JSON object, or a usage error (exit code 2) saying what is wrong."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(
            f"{text!r} is not JSON ({exc.msg} at column {exc.colno}); "
            """pass an object such as '{"name": "x"}'""",
            param_hint="'--kwargs'",
        ) from exc
    if not isinstance(value, dict):
        raise typer.BadParameter(
            f"expected a JSON object of keyword arguments, got {type(value).__name__} {text!r}",
            param_hint="'--kwargs'",
        )
    return value


def build_job(function: str, kwargs: str, **options: Any) -> Job:
    """The Job ``chancy push`` stores; a function or kwargs that cannot work is a usage
    error (exit code 2) naming the option at fault."""
    try:
        return Job.from_func(import_function(function), kwargs=parse_kwargs(kwargs), **options)
    except InvalidKwargsError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--kwargs'") from exc
    except InvalidFunctionError as exc:
        raise typer.BadParameter(str(exc), param_hint="'MODULE:FUNCTION'") from exc
    except InvalidQueueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--queue'") from exc
    except InvalidJobError as exc:
        raise typer.BadParameter(str(exc)) from exc


@app.command(cls=_Command)
def push(
    function: Annotated[
        str,
        typer.Argument(
            help="The job's function, as module:function.",
            metavar="MODULE:FUNCTION",
            show_default=False,
        ),
    ],
    app_path: AppOption = None,
    dsn: DsnOption = None,
    queue: Annotated[
        str, typer.Option("--queue", "-q", metavar="NAME", help="The queue.")
    ] = QUEUE_DEFAULT,
    kwargs: Annotated[
        str,
        typer.Option(metavar="JSON", help="""Keyword arguments, a JSON object: '{"name": "x"}'."""),
    ] = "{}",
    priority: Annotated[
        int, typer.Option(metavar="P", help="Lower values run first.")
    ] = PRIORITY_DEFAULT,
    max_attempts: Annotated[
        int, typer.Option(metavar="N", help="Runs allowed before the job fails.", min=1)
    ] = MAX_ATTEMPTS_DEFAULT,
    delay: Annotated[
        float | None,
        typer.Option(metavar="SECONDS", help="Seconds to wait before it may run.", min=0),
    ] = None,
    unique_key: Annotated[
        str | None,
        typer.Option(
            metavar="KEY",
            help="At most one unfinished job per key: a second push prints the first.",
        ),
    ] = None,
    declare: Annotated[
        bool, typer.Option("--declare", help="Declare the queue if it is not declared yet.")
    ] = False,
) -> None:
    """Push one job and print its id."""
    job = build_job(
        function,
        kwargs,
        queue=queue,
        priority=priority,
        max_attempts=max_attempts,
        delay=delay,
        unique_key=unique_key,
    )
    reference = with_chancy(app_path, dsn, lambda chancy: chancy.push(job, declare=declare))
    typer.echo(reference.id)
    if reference.existing:
        typer.echo(
            f"(existing job: job {reference.id} holds unique key {unique_key!r}; nothing was "
            "pushed)",
            err=True,
        )


job_app = typer.Typer(
    name="job", help="Show, retry or cancel one job.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(job_app)

JobIdArgument = Annotated[
    int, typer.Argument(metavar="ID", help="The job's id.", show_default=False)
]


def fail(message: str) -> typer.Exit:
    """Print ``message`` to stderr; the caller raises the returned exit (code 1)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


@job_app.command("show", cls=_Command)
def job_show(
    job_id: JobIdArgument,
    app_path: AppOption = None,
    dsn: DsnOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Show a job: its state, attempts, timestamps, result and every error."""
    job = with_chancy(app_path, dsn, lambda chancy: chancy.get_job(job_id))
    if job is None:
        raise fail(f"no job {job_id}")
    if as_json:
        typer.echo(json.dumps(job_as_json(job), indent=2))
    else:
        Console().print(render_job(job))


@job_app.command("retry", cls=_Command)
def job_retry(
    job_id: Annotated[
        int | None,
        typer.Argument(
            metavar="[ID]", help="The job's id; or give --state to retry many.", show_default=False
        ),
    ] = None,
    app_path: AppOption = None,
    dsn: DsnOption = None,
    state: Annotated[
        str | None,
        typer.Option(metavar="STATE", help="Retry every job in this state: failed or cancelled."),
    ] = None,
    queue: Annotated[
        str | None,
        typer.Option("--queue", "-q", metavar="NAME", help="With --state: only this queue."),
    ] = None,
) -> None:
    """Put a failed or cancelled job (or, with --state, all of them) back in its queue,
    with one more attempt allowed."""
    if (job_id is None) == (state is None):
        raise typer.BadParameter("give a job id, or --state failed|cancelled (not both)")
    if job_id is not None:
        change_state(
            app_path, dsn, job_id, Chancy.retry_job, "only failed or cancelled jobs can be retried"
        )
        return
    if state not in ("failed", "cancelled"):
        raise typer.BadParameter(f"{state!r}: use failed or cancelled", param_hint="'--state'")
    count = with_chancy(app_path, dsn, lambda chancy: chancy.retry_jobs(state=state, queue=queue))
    typer.echo(f"{count} {state} jobs are pending again")
    if count.skipped:
        typer.echo(skipped_report(state, count.skipped))


SKIPPED_SHOWN_MAX = 20


def skipped_report(state: str, skipped: Mapping[int, int]) -> str:
    """The jobs a bulk retry left as they were, each with the job holding its unique key
    (the first :data:`SKIPPED_SHOWN_MAX`, then how many more)."""
    first = itertools.islice(skipped.items(), SKIPPED_SHOWN_MAX)
    listed = ", ".join(f"job {job} (held by job {holder})" for job, holder in first)
    if (more := len(skipped) - SKIPPED_SHOWN_MAX) > 0:
        listed += f" and {more} more"
    return (
        f"{len(skipped)} {state} jobs were skipped: an unfinished job holds their unique key "
        f"(at most one per key): {listed}. Let the holders finish, or cancel them, then "
        "retry again"
    )


@job_app.command("cancel", cls=_Command)
def job_cancel(job_id: JobIdArgument, app_path: AppOption = None, dsn: DsnOption = None) -> None:
    """Cancel a job that has not finished (a running one is interrupted)."""
    change_state(app_path, dsn, job_id, Chancy.cancel_job, "only unfinished jobs can be cancelled")


def change_state(
    app_path: str | None,
    dsn: str | None,
    job_id: int,
    change: Callable[[Chancy, int], Awaitable[QueuedJob | None]],
    why: str,
) -> None:
    """Apply ``change`` and print the new state; if nothing changed, say why (exit 1)."""

    async def attempt(chancy: Chancy) -> tuple[QueuedJob | None, QueuedJob | None]:
        changed = await change(chancy, job_id)
        return changed, changed or await chancy.get_job(job_id)

    changed, current = with_chancy(app_path, dsn, attempt)
    if current is None:
        raise fail(f"no job {job_id}")
    if changed is None:
        raise fail(f"job {job_id} {_is_in(current.state)}; nothing changed: {why}")
    typer.echo(f"job {job_id} is now {changed.state}")


def _is_in(state: JobState) -> str:
    """``state`` after a job's id, as English: "has succeeded", "is pending"."""
    if state in (JobState.SUCCEEDED, JobState.FAILED):
        return f"has {state.value}"
    if state is JobState.RETRYING:
        return "is waiting to be retried"
    return f"is {state.value}"


# A stored job's fields in the order `job show` lists them: the jobs table's columns
# (every stored field of a QueuedJob is one; ``delay`` is not: it is an instruction to
# the push, stored as ``scheduled_at``).
JOB_FIELDS = tuple(column.name for column in JobRow.__table__.columns)


def job_as_json(job: QueuedJob) -> dict[str, Any]:
    """The stored fields of ``job`` as JSON values (timestamps in ISO 8601), its secret
    kwargs masked (see :func:`chancy.payloads.masked`)."""
    values = {name: getattr(job, name) for name in JOB_FIELDS}
    values["kwargs"] = masked(job.kwargs, job.meta)  # secrets never leave the database
    shown: dict[str, Any] = json.loads(json.dumps(values, default=_json_default))
    return shown


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def render_job(job: QueuedJob) -> RenderableType:
    """The job as a table of its fields, then one panel per error with its traceback."""
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    fields = job_as_json(job)
    fields["attempts"] = f"{job.attempts} of {fields.pop('max_attempts')}"
    del fields["errors"]
    for name, value in fields.items():
        if value not in (None, {}) or name == "result":
            shown = value if isinstance(value, str) else json.dumps(value)
            table.add_row(name, Text(printable(shown)))
    errors = [_render_error(error) for error in job.errors]
    return Group(Panel(table, title=f"job {job.id}: {job.state}"), *errors)


def _render_error(error: object) -> Panel:
    """One stored error as a panel. Its texts are shown as they are written (no markup),
    and an entry that is not an object (a row chancy did not write) is shown as JSON."""
    if not isinstance(error, Mapping):
        body = Text(printable(json.dumps(error, default=repr)))
        return Panel(body, title="an error that is not an object", border_style="red")
    if error.get("deferred") is True:
        title = f"deferred, not an attempt: {error.get('type', 'error')}"
    else:
        title = f"attempt {error.get('attempt', '?')}: {error.get('type', 'error')}"
    body = Text(printable(str(error.get("message", ""))), style="bold")
    if stored := error.get("traceback"):
        traceback_text = printable(fold_runner_frames(str(stored)).rstrip())
        body.append("\n\n" + traceback_text, style="default")
    return Panel(body, title=Text(printable(title)), border_style="red")


# Control characters but the line break and the tab: a stored text holding one (a job's
# error message with a terminal escape, say) must not drive the terminal that shows it.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with its control characters (but line breaks and tabs) escaped (``\\x1b``)."""
    return _CONTROL.sub(lambda match: match[0].encode("unicode_escape").decode("ascii"), text)


# Where the frames that run a job come from: chancy's package (as installed here) and
# Python's library (concurrent.futures, asyncio, threading).
_RUNNER_DIRS = tuple(
    os.path.join(path, "")
    for path in (os.path.dirname(os.path.abspath(__file__)), sysconfig.get_paths()["stdlib"])
)
_RUNNER_PATH = re.compile(r"[/\\]site-packages[/\\]chancy[/\\]")
_FRAME = re.compile(r'^  File "(?P<path>[^"]*)", line \d+')


def fold_runner_frames(text: str) -> str:
    """The traceback ``text`` with the frames that ran the job (chancy's and Python's library's,
    before the job's first own frame) folded into one line, in each of its sections; a
    section with no frame of the job's is left whole."""
    shown: list[str] = []
    held: list[str] | None = None  # the leading runner frames of a section, not shown yet
    for line in text.splitlines():
        frame = _FRAME.match(line)
        if held is not None and frame is not None and _is_runner(frame["path"]):
            held.append(line)
            continue
        if held is not None and frame is None and line.startswith("    "):
            held.append(line)  # the source line (and carets) of a held frame
            continue
        if held:
            frames = sum(1 for each in held if _FRAME.match(each))
            own = frame is not None
            folded = f"  ... {frames} {'frame' if frames == 1 else 'frames'} {_FOLDED}"
            shown += [folded] if own else held
        held = [] if line.startswith("Traceback (most recent call last):") else None
        shown.append(line)
    return "\n".join(shown + (held or []))


_FOLDED = "of chancy and Python's library folded (--json shows them)"


def _is_runner(path: str) -> bool:
    return path.startswith(_RUNNER_DIRS) or _RUNNER_PATH.search(path) is not None


@app.command(cls=_Command)
def demo(
    jobs: Annotated[
        int, typer.Option(metavar="N", help="How many jobs to push.", min=1)
    ] = DEMO_JOBS_DEFAULT,
    concurrency: Annotated[
        int, typer.Option(metavar="N", help="Jobs the worker runs at once.", min=1)
    ] = DEMO_CONCURRENCY_DEFAULT,
    dsn: DsnOption = None,
    *,
    ctx: typer.Context,
) -> None:
    """Run demo jobs, measure throughput, and prove they ran in priority order.

    The jobs (mixed priorities) go into a fresh queue `demo-<hex>` and stay there until
    the next run, which deletes the queues of earlier runs whose jobs have all finished.
    Exit code 1 if any job did not succeed or the order proof fails.
    """
    console = Console()
    try:
        report = with_chancy(
            None,
            dsn,
            lambda chancy: run_demo(chancy, jobs=jobs, concurrency=concurrency, console=console),
        )
    except KeyboardInterrupt:  # before the first job was pushed
        typer.echo("interrupted: no job was pushed", err=True)
        raise typer.Exit(INTERRUPTED_EXIT_CODE) from None
    console.print(report_table(report))
    typer.echo("\n".join(REPORT_NOTES))
    given = ctx.meta.get(_DSN_GIVEN)
    where = f" --dsn {hint_dsn(given)}" if given else ""
    if report.first_job_id is not None:
        typer.echo(f"the jobs are kept: e.g. chancy job show {report.first_job_id}{where}")
    if report.interrupted:
        typer.echo(
            f"interrupted: {report.unfinished} jobs stay pending in queue {report.queue}; "
            f"delete them with `chancy queue delete {report.queue} --force{where}`, or run "
            f"them with `chancy worker -q {report.queue}{where}`"
        )
        raise typer.Exit(INTERRUPTED_EXIT_CODE)
    if not report.ok:
        raise typer.Exit(1)


INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT, as shells report a command ended by Ctrl-C


queue_app = typer.Typer(
    name="queue",
    help="List, declare, pause, resume or delete queues.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(queue_app)
QueueArgument = Annotated[
    str, typer.Argument(metavar="NAME", help="The queue's name.", show_default=False)
]


@app.command(cls=_Command)
def web(
    app_path: AppOption = None,
    dsn: DsnOption = None,
    host: Annotated[
        str,
        typer.Option(
            "--host",
            help="The address to listen on. Another than a loopback one needs "
            "CHANCY_WEB_USER and CHANCY_WEB_PASSWORD (HTTP Basic auth).",
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="The port to listen on.")] = 8000,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            metavar="NAME",
            help="A host name the dashboard answers to besides localhost, 127.0.0.1 and "
            "[::1] (repeatable; '*.example.com' for its subdomains). Without auth it "
            "answers to no other, against DNS rebinding.",
        ),
    ] = None,
) -> None:
    """Serve the dashboard (jobs, queues, workers, schedules) with uvicorn.

    Needs the extra: pip install 'chancy[web]'."""
    try:
        from chancy.web.serve import check_exposure, serve
    except ImportError as exc:
        raise ChancyError(
            "chancy web needs the dashboard's extra: pip install 'chancy[web]'"
        ) from exc
    check_exposure(host)
    chancy = load_app(app_path) if app_path else Chancy(dsn)
    asyncio.run(serve(chancy, host=host, port=port, allowed_hosts=allowed_host or ()))


@queue_app.command("list", cls=_Command)
def queue_list(app_path: AppOption = None, dsn: DsnOption = None) -> None:
    """Show every declared queue: paused or not, and its cluster-wide limits."""
    queues = with_chancy(app_path, dsn, Chancy.list_queues)
    table = Table("queue", "paused", "resume at", "global concurrency", "rate limit")
    for info in queues:
        rate = f"{info.rate_limit} / {info.rate_period:g} s" if info.rate_limit else ""
        table.add_row(
            info.name,
            "yes" if info.paused else "no",
            info.resume_at.isoformat() if info.resume_at else "",
            str(info.global_concurrency or ""),
            rate,
        )
    Console().print(table)


@queue_app.command("declare", cls=_Command)
def queue_declare(name: QueueArgument, app_path: AppOption = None, dsn: DsnOption = None) -> None:
    """Declare a queue by name: a new one has no limits, a declared one keeps its limits
    (set limits with Queue(...) in your app)."""
    with_chancy(app_path, dsn, lambda chancy: chancy.declare(name))
    typer.echo(f"queue {name} is declared")


@queue_app.command("pause", cls=_Command)
def queue_pause(name: QueueArgument, app_path: AppOption = None, dsn: DsnOption = None) -> None:
    """Stop workers from starting this queue's jobs (running ones go on)."""
    with_chancy(app_path, dsn, lambda chancy: chancy.pause_queue(name))
    typer.echo(f"queue {name} is paused")


@queue_app.command("resume", cls=_Command)
def queue_resume(name: QueueArgument, app_path: AppOption = None, dsn: DsnOption = None) -> None:
    """Let workers start this queue's jobs again."""
    with_chancy(app_path, dsn, lambda chancy: chancy.resume_queue(name))
    typer.echo(f"queue {name} is resumed")


@queue_app.command("delete", cls=_Command)
def queue_delete(
    name: QueueArgument,
    app_path: AppOption = None,
    dsn: DsnOption = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Delete the queue's jobs with it (pending, scheduled and finished ones).",
        ),
    ] = False,
) -> None:
    """Delete a queue that has no jobs; with --force, with its jobs. Never while a job of
    it runs (cancel it, or pause the queue and let it finish); the queue default is kept."""
    deleted = with_chancy(app_path, dsn, lambda chancy: chancy.delete_queue(name, force=force))
    with_jobs = f", with its {deleted} {'job' if deleted == 1 else 'jobs'}" if deleted else ""
    typer.echo(f"queue {name} is deleted{with_jobs}")


def main() -> None:
    """Entry point of the ``chancy`` console script."""
    try:
        app()
    except ChancyError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
