"""Who may see the dashboard and act on it, and what its pages never show.

:func:`level` decides each request's access: the application's ``access(request)`` hook
when given (``"all"``, ``"read_only"`` or ``"forbidden"``; it may be async), else HTTP
Basic auth when ``CHANCY_WEB_USER`` and ``CHANCY_WEB_PASSWORD`` are set, else ``"all"``
(a dashboard mounted in an application sits behind that application's own auth).
A hook that raises, or returns anything else, refuses the request (and is logged).
With neither hook nor Basic auth, only loopback host names are served (:class:`HostNames`),
so that no other site can reach the dashboard by DNS rebinding.
Every action is a POST that must come from the dashboard's own origin
(:func:`same_origin`). :func:`redacted` hides the values of secret-looking keys.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import inspect
import ipaddress
import logging
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
    "HostNames",
    "Level",
    "is_loopback",
    "redacted",
    "same_origin",
]

log = logging.getLogger("chancy.web")

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


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or address, IPv6 in brackets or not) is reachable from
    this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The name in a ``Host`` header: lower-case, without its port or a final dot."""
    header = header.strip().lower()
    bracketed = header.startswith("[")  # an IPv6 address: its colons are not the port's
    name = header.partition("]")[0] + "]" if bracketed else header.partition(":")[0]
    return name.rstrip(".")


class HostNames:
    """The host names a dashboard answers to: the loopback ones (``localhost``,
    ``127.0.0.1``, ``[::1]``, any port) and ``allowed`` (exact names, ``*.example.com``
    for its subdomains, ``*`` for any name)."""

    def __init__(self, allowed: Iterable[str] = ()) -> None:
        self.allowed = tuple(host_name(name) for name in allowed)

    def allow(self, request: Request) -> bool:
        header = request.headers.get("host")
        if header is None:
            return True  # not from a browser, which always names the host it asked for
        name = host_name(header)
        return is_loopback(name) or any(self._matches(name, given) for given in self.allowed)

    @staticmethod
    def _matches(name: str, given: str) -> bool:
        if given == "*":
            return True
        if given.startswith("*."):
            return name.endswith(given[1:])
        return name == given

    def refusal(self, request: Request) -> str:
        """What a request to another name is told: why, and how to allow the name."""
        name = host_name(request.headers.get("host", ""))[:100]
        return (
            f"chancy's dashboard does not answer to the host name {name!r}: without auth it "
            "answers to loopback names only (localhost, 127.0.0.1, [::1]), lest a page "
            "of another site reach it through DNS rebinding. Open it at 127.0.0.1, or "
            f"allow the name: create_app(chancy, allowed_hosts=[{name!r}]) or chancy web "
            f"--allowed-host {name}, or give the dashboard auth (access=, or "
            f"{USER_VARIABLE} and {PASSWORD_VARIABLE})"
        )


class Access:
    """The access rules of one dashboard: the hook, Basic auth, read-only mode, and the
    host names served. ``allowed_hosts`` None: loopback names only while neither hook
    nor Basic auth is configured, any name once one is; given: loopback names and
    these, always."""

    def __init__(
        self,
        hook: AccessHook | None,
        basic: BasicAuth | None,
        *,
        read_only: bool,
        allowed_hosts: Iterable[str] | None = None,
    ) -> None:
        self.hook = hook
        self.basic = basic
        self.read_only = read_only
        checked = allowed_hosts is not None or not self.configured
        self.hosts = HostNames(allowed_hosts or ()) if checked else None

    def host_refusal(self, request: Request) -> str | None:
        """None when the request's host name is served, else why it is not."""
        if self.hosts is None or self.hosts.allow(request):
            return None
        return self.hosts.refusal(request)

    @property
    def configured(self) -> bool:
        """Whether anything stands between a visitor and the dashboard."""
        return self.hook is not None or self.basic is not None

    async def level(self, request: Request) -> Level | None:
        """The request's access; None: it must authenticate (Basic auth)."""
        if self.hook is not None:
            level = await self._hooked(self.hook, request)
        elif self.basic is not None:
            if not self.basic.allows(request):
                return None
            level = "all"
        else:
            level = "all"
        if level == "all" and self.read_only:
            return "read_only"
        return level

    @staticmethod
    async def _hooked(hook: AccessHook, request: Request) -> Level:
        """The hook's answer; ``"forbidden"`` (logged) when it raises or answers
        something else than a level."""
        try:
            given = hook(request)
            found = await given if inspect.isawaitable(given) else given
        except Exception:
            log.exception("the dashboard's access() hook raised: the request is refused")
            return "forbidden"
        if not isinstance(found, str) or found not in LEVELS:
            log.error(
                "the dashboard's access() hook returned %r, not one of %s: the request is refused",
                found,
                list(LEVELS),
            )
            return "forbidden"
        level: Level = found
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
    ``words`` (case-insensitive) shown as ``•••``; so too the second item of a
    two-item list whose first is such a name (``[["Authorization", "Bearer ..."]]``,
    headers as pairs)."""
    lowered = tuple(word.lower() for word in words)
    return _redact(value, lowered)


def _redact(value: Any, words: tuple[str, ...]) -> Any:
    if isinstance(value, Mapping):
        return {
            key: REDACTED if _secret(key, words) else _redact(item, words)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        if len(value) == 2 and isinstance(value[0], str) and _secret(value[0], words):
            return [value[0], REDACTED]  # a [name, value] pair: headers as a list
        return [_redact(item, words) for item in value]
    return value


def _secret(key: Any, words: tuple[str, ...]) -> bool:
    lowered = str(key).lower()
    return any(word in lowered for word in words)
