"""A module no worker in the tests may import: its top-level code records the import.

Tests name its function in a job that ``allowed=`` does not allow, then check
:data:`tests.support.allowed_tasks.imported` and ``sys.modules``.
"""

from __future__ import annotations

from tests.support import allowed_tasks

allowed_tasks.imported.append(__name__)


def run() -> str:
    return "this must never run"
