"""Job functions for the tests of ``allowed=`` (``tests/integration/test_allowed.py``).

This module imports ``os``, so ``tests.support.allowed_tasks.os.getcwd`` is a name that starts
inside an allowed module and reaches out of it: a worker must refuse it. It also defines
callables that are not functions (a class, an instance, a class method): a row naming one
matches the patterns, yet a worker must not call it.
"""

from __future__ import annotations

import os
import subprocess

imported: list[str] = []
"""Where :mod:`tests.support.never_imported` records that it was imported (it must not be)."""


def hello(name: str) -> str:
    return f"hello {name}"


def where() -> str:
    return os.getcwd()


class Spawner(subprocess.Popen[bytes]):
    """A class, not a function: "calling" it with a row's kwargs would start a process."""

    def __init__(self, args: list[str]) -> None:
        super().__init__(args)
        self.wait()

    @classmethod
    def spawn(cls, args: list[str]) -> int:
        return cls(args).returncode


class _Caller:
    def __call__(self, args: list[str]) -> int:
        return subprocess.call(args)


call = _Caller()
"""An instance with ``__call__``: callable, but not a function."""
