"""``chancy web`` refuses to expose an unauthenticated dashboard beyond this machine."""

from __future__ import annotations

import subprocess
import sys

import pytest

from chancy.errors import ConfigurationError
from chancy.web.serve import check_exposure, is_loopback


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"])
def test_loopback_addresses(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "example.com"])
def test_other_addresses_need_auth(host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHANCY_WEB_USER", raising=False)
    monkeypatch.delenv("CHANCY_WEB_PASSWORD", raising=False)
    with pytest.raises(ConfigurationError, match="CHANCY_WEB_USER and CHANCY_WEB_PASSWORD"):
        check_exposure(host)
    monkeypatch.setenv("CHANCY_WEB_USER", "ops")
    monkeypatch.setenv("CHANCY_WEB_PASSWORD", "s3cret")
    check_exposure(host)


def test_half_the_credentials_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHANCY_WEB_USER", "ops")
    monkeypatch.delenv("CHANCY_WEB_PASSWORD", raising=False)
    with pytest.raises(ConfigurationError, match="CHANCY_WEB_PASSWORD is not set"):
        check_exposure("0.0.0.0")


def test_the_command_refuses_a_public_address_without_auth() -> None:
    env = {"PATH": "/usr/bin:/bin", "CHANCY_DSN": "postgresql://nobody@127.0.0.1:1/none"}
    done = subprocess.run(
        [sys.executable, "-m", "chancy", "web", "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "refuses to listen on 0.0.0.0 with no auth" in done.stderr
