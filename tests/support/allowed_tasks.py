"""Job functions for the tests of ``allowed=`` (``tests/integration/test_allowed.py``).

This module imports ``os``, so ``tests.support.allowed_tasks.os.getcwd`` is a name that starts
inside an allowed module and reaches out of it: a worker must refuse it.
"""

from __future__ import annotations

import os

imported: list[str] = []
"""Where :mod:`tests.support.never_imported` records that it was imported (it must not be)."""


def hello(name: str) -> str:
    return f"hello {name}"


def where() -> str:
    return os.getcwd()
