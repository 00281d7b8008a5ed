"""chancy's dashboard: jobs, queues, workers and schedules in the browser.

Needs the extra: ``pip install 'chancy[web]'``. Serve it with ``chancy web``, or mount
:func:`create_app` in an application::

    app.mount("/chancy", create_app(chancy, access=my_access, redact=["password", "iban"]))
"""

from chancy.web.access import REDACT_DEFAULT, AccessHook, Level
from chancy.web.app import create_app

__all__ = ["REDACT_DEFAULT", "AccessHook", "Level", "create_app"]
