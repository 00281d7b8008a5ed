"""An --app module (or a job's module) that exits while it is imported, as a script whose
``sys.exit(main())`` is not guarded does."""

import sys

sys.exit(3)


def task() -> None:
    """Never reached: importing the module exits first."""
