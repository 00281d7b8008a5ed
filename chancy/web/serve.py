"""``chancy web``: the dashboard served by uvicorn, on a Chancy it opens and closes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from chancy.errors import ConfigurationError
from chancy.web.access import PASSWORD_VARIABLE, USER_VARIABLE, BasicAuth, is_loopback

if TYPE_CHECKING:
    from chancy.app import Chancy

__all__ = ["HOST_DEFAULT", "PORT_DEFAULT", "check_exposure", "is_loopback", "serve"]

HOST_DEFAULT = "127.0.0.1"
PORT_DEFAULT = 8000


def check_exposure(host: str) -> None:
    """Refuse a non-loopback ``host`` while no auth is configured: anyone who reached
    the dashboard could retry, cancel and delete jobs."""
    if is_loopback(host) or BasicAuth.from_environment() is not None:
        return
    raise ConfigurationError(
        f"chancy web refuses to listen on {host} with no auth: anyone who reaches it could "
        f"see every job's arguments and retry, cancel or delete jobs. Set {USER_VARIABLE} "
        f"and {PASSWORD_VARIABLE} (HTTP Basic auth), or listen on {HOST_DEFAULT} behind a "
        "proxy of your own, or mount chancy.web.create_app(chancy, access=...) in your "
        "application behind its own auth"
    )


async def serve(
    chancy: Chancy,
    *,
    host: str = HOST_DEFAULT,
    port: int = PORT_DEFAULT,
    allowed_hosts: Sequence[str] = (),
) -> None:
    """Serve the dashboard of ``chancy`` on ``host``:``port`` until interrupted.
    ``allowed_hosts``: the host names it answers to besides the loopback ones (see
    :func:`~chancy.web.create_app`)."""
    check_exposure(host)
    try:
        import uvicorn
    except ImportError as exc:
        raise ConfigurationError(
            "chancy web needs the dashboard's extra: pip install 'chancy[web]'"
        ) from exc
    from chancy.web.app import create_app

    async with chancy:
        app = create_app(chancy, allowed_hosts=list(allowed_hosts) or None)
        config = uvicorn.Config(app, host=host, port=port, log_level="info", lifespan="on")
        await uvicorn.Server(config).serve()
