"""Naming a job's function so that a worker in another process can import it again.

A job stores its function as a dotted name, ``package.module.function``. Only functions a
worker can find by that name are accepted: module-level functions (and static methods of
module-level classes). A function defined in a script run as ``python job.py`` lives in
``__main__``; it is stored under the script's own module name (``job.function``), so a
worker started from the same directory imports it as a normal module.

:func:`is_job_function` is the one rule of what a job may name, applied by
``Job.from_func`` when a job is made and by a worker before it calls what a stored row
names: a class, an instance with ``__call__`` or a bound method never runs.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import sys
import types
from collections.abc import Callable
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
            module = importlib.import_module(module_name)
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
