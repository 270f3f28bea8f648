"""A real Chromium for the console's browser tests (Playwright, the system's /usr/bin/chromium).

The server's certificate must be trusted, not ignored: WebAuthn refuses a page with a
certificate error, and a test that clicks through one proves nothing about the real console.
So each browser gets its own HOME whose NSS database (what Chromium on Linux trusts) holds the
server home's root CA, made with ``certutil``. One Chromium per root CA per session
(:func:`browsers`, session-scoped); each test takes a fresh context (cookies, storage) from it.

A virtual authenticator (CTAP2, internal, resident keys, user verified) is added to a page
through the DevTools protocol by :func:`add_virtual_authenticator`.

Never ``playwright install``: the system Chromium is the one this machine has.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

__all__ = [
    "CHROMIUM",
    "BrowserPool",
    "add_virtual_authenticator",
    "browsers",
    "trusting_home",
]

CHROMIUM = Path("/usr/bin/chromium")
_ARGS = (
    "--no-sandbox",  # the tests run as root
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
)
_CERTUTIL_TIMEOUT_S = 60


def trusting_home(home: Path, root_ca_pem: Path) -> Path:
    """A HOME for Chromium whose NSS database trusts ``root_ca_pem`` to issue server certs.

    Args:
        home: A new directory (made here).
        root_ca_pem: The root CA certificate (the first PEM in the file is the one added).

    Returns:
        ``home``.
    """
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True, exist_ok=True)
    for args in (
        ["-N", "--empty-password"],
        ["-A", "-t", "C,,", "-n", "trustfleet-test-root", "-i", str(root_ca_pem)],
    ):
        subprocess.run(
            ["certutil", "-d", f"sql:{nssdb}", *args],
            check=True,
            capture_output=True,
            timeout=_CERTUTIL_TIMEOUT_S,
        )
    return home


@dataclass
class BrowserPool:
    """Chromium processes by the root CA they trust, launched on first use, closed at the end."""

    playwright: Playwright
    workdir: Path
    _by_ca: dict[bytes, Browser] = field(default_factory=dict)

    def browser(self, root_ca_pem: Path) -> Browser:
        """A Chromium whose HOME trusts ``root_ca_pem`` (one per distinct root CA)."""
        key = root_ca_pem.read_bytes()
        if key not in self._by_ca:
            home = trusting_home(self.workdir / f"home-{len(self._by_ca)}", root_ca_pem)
            self._by_ca[key] = self.playwright.chromium.launch(
                executable_path=str(CHROMIUM),
                args=list(_ARGS),
                env={**os.environ, "HOME": str(home)},
            )
        return self._by_ca[key]

    def context(self, root_ca_pem: Path, **options: Any) -> BrowserContext:
        """A fresh context (no cookies) of the browser that trusts ``root_ca_pem``."""
        return self.browser(root_ca_pem).new_context(**options)

    def close(self) -> None:
        for browser in self._by_ca.values():
            browser.close()
        self._by_ca.clear()


def add_virtual_authenticator(context: BrowserContext, page: Page) -> str:
    """A virtual platform authenticator (CTAP2, resident keys, user verified) for ``page``.

    Returns:
        The authenticator's id (for ``WebAuthn.getCredentials``).
    """
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    options = {
        "protocol": "ctap2",
        "transport": "internal",
        "hasResidentKey": True,
        "hasUserVerification": True,
        "isUserVerified": True,
    }
    answer = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": options})
    return str(answer["authenticatorId"])


@pytest.fixture(scope="session")
def browsers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserPool]:
    """The session's Chromium processes (skipped when /usr/bin/chromium is missing)."""
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is not installed (scripts/bootstrap installs it)")
    with sync_playwright() as playwright:
        pool = BrowserPool(playwright, tmp_path_factory.mktemp("chromium"))
        try:
            yield pool
        finally:
            pool.close()
