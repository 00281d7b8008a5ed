"""Who may see the dashboard and act on it, and what its pages never show.

:func:`level` decides each request's access: the application's ``access(request)`` hook
when given (``"all"``, ``"read_only"`` or ``"forbidden"``; it may be async), else HTTP
Basic auth when ``CHANCY_WEB_USER`` and ``CHANCY_WEB_PASSWORD`` are set, else ``"all"``
(a dashboard mounted in an application sits behind that application's own auth).
Every action is a POST that must come from the dashboard's own origin
(:func:`same_origin`). :func:`redacted` hides the values of secret-looking keys.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import inspect
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Literal

from starlette.requests import Request

from chancy.errors import ConfigurationError

__all__ = [
    "REDACTED",
    "REDACT_DEFAULT",
    "Access",
    "AccessHook",
    "BasicAuth",
    "Level",
    "redacted",
    "same_origin",
]

Level = Literal["all", "read_only", "forbidden"]
AccessHook = Callable[[Request], "Level | Awaitable[Level]"]
LEVELS: tuple[Level, ...] = ("all", "read_only", "forbidden")

REDACT_DEFAULT: tuple[str, ...] = ("password", "token", "secret", "key", "authorization")
"""The parts of a kwargs key whose value the dashboard hides (case-insensitive)."""
REDACTED = "•••"

USER_VARIABLE = "CHANCY_WEB_USER"
PASSWORD_VARIABLE = "CHANCY_WEB_PASSWORD"


class BasicAuth:
    """HTTP Basic credentials, compared in constant time."""

    def __init__(self, user: str, password: str) -> None:
        self._user = user.encode()
        self._password = password.encode()

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> BasicAuth | None:
        """The credentials of ``CHANCY_WEB_USER`` and ``CHANCY_WEB_PASSWORD``, or None
        when neither is set; one without the other is a mistake, said so."""
        user, password = environ.get(USER_VARIABLE), environ.get(PASSWORD_VARIABLE)
        if not user and not password:
            return None
        if not user or not password:
            missing = USER_VARIABLE if not user else PASSWORD_VARIABLE
            raise ConfigurationError(
                f"{missing} is not set: set both {USER_VARIABLE} and {PASSWORD_VARIABLE} "
                "for HTTP Basic auth, or neither"
            )
        return cls(user, password)

    def allows(self, request: Request) -> bool:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded, validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return False
        # Both compared, always: the time taken says nothing about which one was wrong.
        right_user = hmac.compare_digest(user, self._user)
        right_password = hmac.compare_digest(password, self._password)
        return right_user and right_password


class Access:
    """The access rules of one dashboard: the hook, Basic auth, and read-only mode."""

    def __init__(
        self, hook: AccessHook | None, basic: BasicAuth | None, *, read_only: bool
    ) -> None:
        self.hook = hook
        self.basic = basic
        self.read_only = read_only

    @property
    def configured(self) -> bool:
        """Whether anything stands between a visitor and the dashboard."""
        return self.hook is not None or self.basic is not None

    async def level(self, request: Request) -> Level | None:
        """The request's access; None: it must authenticate (Basic auth)."""
        if self.hook is not None:
            given = self.hook(request)
            found = await given if inspect.isawaitable(given) else given
            if found not in LEVELS:
                raise TypeError(f"access() returned {found!r}; return one of {list(LEVELS)}")
            level: Level = found
        elif self.basic is not None:
            if not self.basic.allows(request):
                return None
            level = "all"
        else:
            level = "all"
        if level == "all" and self.read_only:
            return "read_only"
        return level


def same_origin(request: Request) -> bool:
    """Whether a POST comes from the dashboard's own pages: ``Sec-Fetch-Site`` when the
    browser sends it, else ``Origin`` against the request's own scheme and host. A request
    with neither is not from a browser's page (a script's): nothing cross-site to fear."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site == "same-origin"
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin in (f"{request.url.scheme}://{host}", f"http://{host}", f"https://{host}")


def redacted(value: Any, words: Iterable[str]) -> Any:
    """``value`` with the value of every key (at any depth) that contains one of
    ``words`` (case-insensitive) shown as ``•••``."""
    lowered = tuple(word.lower() for word in words)
    return _redact(value, lowered)


def _redact(value: Any, words: tuple[str, ...]) -> Any:
    if isinstance(value, Mapping):
        return {
            key: REDACTED
            if any(word in str(key).lower() for word in words)
            else _redact(item, words)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(item, words) for item in value]
    return value
