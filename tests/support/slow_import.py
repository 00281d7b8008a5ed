"""A module whose import takes :data:`IMPORT_SECONDS`, longer than the lease of the test
that imports it (through a worker only: nothing else imports this module)."""

from __future__ import annotations

import time

IMPORT_SECONDS = 5.0

time.sleep(IMPORT_SECONDS)


def imported() -> str:
    return "imported"
