"""Naming a job's function so that a worker in another process can import it again.

A job stores its function as a dotted name, ``package.module.function``. Only functions a
worker can find by that name are accepted: module-level functions (and static methods of
module-level classes). A function defined in a script run as ``python job.py`` lives in
``__main__``; it is stored under the script's own module name (``job.function``), so a
worker started from the same directory imports it as a normal module.

:func:`is_job_function` is the one rule of what a job may name, applied by
``Job.from_func`` when a job is made and by a worker before it calls what a stored row
names: a class, an instance with ``__call__`` or a bound method never runs.

A worker imports a job's module to find its function, so a script whose entry point is not
guarded (``asyncio.run(main())`` at the bottom of ``job.py``) would run its ``main()``
inside the worker at that import: :func:`resolve` reads a module's statements before it
imports it and refuses one that starts an event loop at import, naming the guard.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import inspect
import os
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeGuard, cast

from chancy.errors import InvalidFunctionError

__all__ = ["is_job_function", "name_of", "resolve"]


def name_of(fn: object) -> str:
    """Return the importable dotted name of ``fn``, or raise :class:`InvalidFunctionError`."""
    _reject_unnamed(fn)
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        raise InvalidFunctionError(
            f"{fn!r} has no module or name; pass a function defined at module level"
        )
    if "<locals>" in qualname:
        raise InvalidFunctionError(
            f"{qualname} is defined inside another function (a closure), so a worker cannot "
            "import it; move it to module level"
        )
    if module == "__main__":
        module = _main_module_name(qualname)
    elif _lookup(sys.modules.get(module), qualname) is not fn:
        raise InvalidFunctionError(
            f"{module}.{qualname} does not name {fn!r}; pass the function as it is defined at "
            "module level (not a decorated copy or an alias)"
        )
    return f"{module}.{qualname}"


def is_job_function(fn: object) -> TypeGuard[types.FunctionType | types.BuiltinFunctionType]:
    """Whether ``fn`` is something a job may name: a function (``def`` or ``async def``,
    a static method reached through its class included) or a built-in function of a
    module. Never a class, an instance with ``__call__``, a method bound to an instance
    or a class (a class method), or a ``functools.partial``: calling one of those runs
    code the name does not show (a constructor, ``__call__``)."""
    if inspect.isfunction(fn):
        return True
    owner = getattr(fn, "__self__", None)
    return inspect.isbuiltin(fn) and (owner is None or isinstance(owner, types.ModuleType))


def resolve(name: str) -> Callable[..., Any]:
    """Import and return the function a dotted name stored by :func:`name_of` refers to."""
    parts = name.split(".")
    for split in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:split])
        try:
            module = _import(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and not module_name.startswith(exc.name):
                raise
            continue
        fn = _lookup(module, ".".join(parts[split:]))
        if callable(fn):
            return cast("Callable[..., Any]", fn)
        break
    raise InvalidFunctionError(
        f"cannot import the job function {name!r}; start the worker where that module is "
        "importable (the directory or virtualenv of the code that pushed the job)"
    )


GUARD_HINT = 'guard the script\'s entry point with `if __name__ == "__main__":`'
_LOOP_RUNNERS = frozenset({"asyncio", "uvloop", "anyio", "trio"})
"""Modules whose ``run(...)`` starts an event loop and runs a coroutine to its end."""
_LOOP_ALREADY_RUNNING = "cannot be called from a running event loop"


def _import(module_name: str) -> types.ModuleType:
    """``importlib.import_module``, refusing first a module that would start an event loop
    (a script's ``main()``) when imported."""
    if module_name not in sys.modules:
        _refuse_unguarded_entry_point(module_name)
    try:
        return importlib.import_module(module_name)
    except RuntimeError as exc:
        # An entry point the module's statements do not show (a function it calls at
        # import starts the loop), imported on a running loop: asyncio refuses it.
        if _LOOP_ALREADY_RUNNING not in str(exc):
            raise
        message = str(exc)
    # Raised outside the except block: asyncio's traceback, which holds the coroutine it
    # never ran, is gone by now.
    raise InvalidFunctionError(
        f"importing {module_name} runs an event loop ({message}): a worker imports the "
        f"module to find the job's function; {GUARD_HINT}"
    )


def _refuse_unguarded_entry_point(module_name: str) -> None:
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        return  # the import itself says what is wrong
    origin = spec.origin if spec is not None else None
    if not isinstance(origin, str) or not origin.endswith(".py"):
        return
    try:
        tree = ast.parse(Path(origin).read_bytes(), filename=origin)
    except (OSError, SyntaxError, ValueError):
        return
    line = _loop_started_at_import(tree)
    if line is not None:
        raise InvalidFunctionError(
            f"{module_name} ({origin}, line {line}) starts an event loop when it is imported: "
            "a worker imports it to find the job's function, and would run the script's "
            f"main() again; {GUARD_HINT}"
        )


def _loop_started_at_import(tree: ast.Module) -> int | None:
    """The line of the first statement that runs at import and starts an event loop
    (``asyncio.run(...)``, ``run(...)`` imported from asyncio, ``.run_until_complete(...)``),
    or None. The body of ``if __name__ == "__main__":``, functions and classes do not run
    at import."""
    loop_modules: set[str] = set()
    loop_runs: set[str] = set()
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        statement = pending.pop(0)
        if isinstance(statement, ast.Import):
            loop_modules.update(
                alias.asname or alias.name
                for alias in statement.names
                if alias.name in _LOOP_RUNNERS
            )
        elif isinstance(statement, ast.ImportFrom):
            if statement.module in _LOOP_RUNNERS:
                loop_runs.update(
                    alias.asname or alias.name for alias in statement.names if alias.name == "run"
                )
        elif isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        elif isinstance(statement, ast.If) and _is_main_guard(statement.test):
            pending[:0] = statement.orelse
            continue
        nested = _nested_statements(statement)
        if nested is None:
            runs_now: list[ast.AST] = [statement]
        else:  # the statement's own expressions (a condition, an iterable), then its body
            runs_now = [
                value for _, value in ast.iter_fields(statement) if isinstance(value, ast.expr)
            ]
            pending[:0] = nested
        for call in _calls(runs_now):
            if _starts_a_loop(call, loop_modules, loop_runs):
                return statement.lineno
    return None


def _calls(nodes: list[ast.AST]) -> Iterator[ast.Call]:
    """The calls in ``nodes``, but not inside a lambda (which runs when called)."""
    pending = list(nodes)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Lambda):
            continue
        if isinstance(node, ast.Call):
            yield node
        pending.extend(ast.iter_child_nodes(node))


def _nested_statements(statement: ast.stmt) -> list[ast.stmt] | None:
    """The statements inside a compound statement that may run at import, else None."""
    if isinstance(statement, ast.If | ast.For | ast.AsyncFor | ast.While):
        return [*statement.body, *statement.orelse]
    if isinstance(statement, ast.With | ast.AsyncWith):
        return list(statement.body)
    if isinstance(statement, ast.Try | ast.TryStar):
        handlers = [inner for handler in statement.handlers for inner in handler.body]
        return [*statement.body, *handlers, *statement.orelse, *statement.finalbody]
    if isinstance(statement, ast.Match):
        return [inner for case in statement.cases for inner in case.body]
    return None


def _starts_a_loop(call: ast.Call, loop_modules: set[str], loop_runs: set[str]) -> bool:
    function = call.func
    if isinstance(function, ast.Name):
        return function.id in loop_runs
    if not isinstance(function, ast.Attribute):
        return False
    if function.attr == "run_until_complete":
        return True
    owner = function.value
    return function.attr == "run" and isinstance(owner, ast.Name) and owner.id in loop_modules


def _is_main_guard(test: ast.expr) -> bool:
    """``__name__ == "__main__"``, either way round."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1):
        return False
    if not isinstance(test.ops[0], ast.Eq):
        return False
    sides = [test.left, test.comparators[0]]
    names = [side for side in sides if isinstance(side, ast.Name) and side.id == "__name__"]
    mains = [side for side in sides if isinstance(side, ast.Constant) and side.value == "__main__"]
    return len(names) == 1 and len(mains) == 1


def _reject_unnamed(fn: object) -> None:
    if isinstance(fn, functools.partial):
        raise InvalidFunctionError(
            "functools.partial objects cannot be stored; pass the function itself and put the "
            "bound arguments in kwargs"
        )
    if inspect.ismethod(fn):
        raise InvalidFunctionError(
            f"{fn.__qualname__} is a bound method; a worker cannot rebuild its instance. Use a "
            "module-level function (or a staticmethod) and pass what it needs in kwargs"
        )
    if not is_job_function(fn):
        raise InvalidFunctionError(
            f"{fn!r} is not a function; pass a module-level function such as my_module.my_task"
        )
    if fn.__name__ == "<lambda>":
        raise InvalidFunctionError(
            "a lambda has no importable name; define the job with def at module level"
        )


def _main_module_name(qualname: str) -> str:
    """The name a worker imports ``__main__`` by: its spec under ``python -m``, else the
    script's file name."""
    main = sys.modules["__main__"]
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name and spec.name != "__main__":
        name: str = spec.name
        return name.removesuffix(".__main__")
    path = getattr(main, "__file__", None)
    if not path:
        raise InvalidFunctionError(
            f"{qualname} is defined in an interactive session; a worker cannot import it. "
            "Move it into a module"
        )
    stem = Path(str(path)).stem
    if not stem.isidentifier():
        raise InvalidFunctionError(
            f"{qualname} is defined in {os.path.basename(path)!r}, which is not an importable "
            "module name; rename the file (letters, digits and '_') or move the function"
        )
    return stem


def _lookup(module: types.ModuleType | None, qualname: str) -> Any:
    target: Any = module
    for attribute in qualname.split("."):
        target = getattr(target, attribute, None)
        if target is None:
            return None
    return target
