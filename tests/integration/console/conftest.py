"""A fleet for the console's browser tests, and the steps every test takes (log in, …).

One fleet for the session (the demo's first stages: a server with a witness, a release, four
devices with their agents enrolled and publishing), one Chromium trusting its root CA
(support/browser.py), and a fresh browser context (no cookies) per test. Operators are added
through the services, in this process, on the fleet's store.
"""

from __future__ import annotations

import secrets
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pyotp
import pytest
from playwright.sync_api import BrowserContext, Page, expect

from support.browser import BrowserPool, browsers  # noqa: F401  # the session's Chromium
from trustfleet.services.operators import add_operator
from trustfleet.sim.fleet import SimFleet, utc_now
from trustfleet.sim.scenarios import DEMO

pytestmark = pytest.mark.integration

SETUP_STAGES = ("init", "release", "provision", "serve", "enroll", "telemetry")
PASSWORD_CHARS = 24
UI_TIMEOUT_MS = 30_000
HTTP_TIMEOUT_S = 30


@pytest.fixture(scope="session")
def console_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimFleet]:
    """A served fleet whose devices enrolled and publish telemetry."""
    fleet = SimFleet(tmp_path_factory.mktemp("console-fleet"), size=4)
    stages = {stage.name: stage for stage in DEMO}
    try:
        for name in SETUP_STAGES:
            result = stages[name](fleet)
            assert result.ok, f"setup stage {name} failed: {result.to_json()}"
        # The fleet outlives this package's tests in the worker: hold no token session between
        # tests, or the next test of another module could not open its own token configuration.
        fleet.srv.close_runtime()
        yield fleet
    finally:
        fleet.stop()


@dataclass
class Operator:
    login: str
    password: str
    role: str


@dataclass
class ConsoleSession:
    """A browser context on the fleet's console."""

    fleet: SimFleet
    context: BrowserContext
    page: Page

    @property
    def base(self) -> str:
        return self.fleet.srv.base_url

    def goto(self, path: str) -> int:
        response = self.page.goto(self.base + path)
        assert response is not None
        return response.status

    def add_operator(self, role: str) -> Operator:
        login = f"{role.replace('-', '')}{secrets.token_hex(3)}"
        password = secrets.token_urlsafe(PASSWORD_CHARS)
        add_operator(
            self.fleet.srv.runtime, login=login, role=role, password=password, now=utc_now()
        )
        return Operator(login=login, password=password, role=role)

    def password_step(self, who: Operator) -> None:
        self.goto("/console/login")
        self.page.fill("input[name=login]", who.login)
        self.page.fill("input[name=password]", who.password)
        self.page.click("button[type=submit]")

    def enroll_totp(self) -> pyotp.TOTP:
        """On the enrollment page: read the secret, confirm with a code; the TOTP."""
        expect(self.page.locator("#totp-secret")).to_be_visible()
        totp = pyotp.TOTP(self.page.inner_text("#totp-secret").strip())
        self.page.fill("input[name=code]", totp.now())
        self.page.click("form[action='/console/mfa/enroll'] button[type=submit]")
        return totp

    def login_with_totp(self, who: Operator) -> pyotp.TOTP:
        """A first login of an MFA role: password, TOTP enrollment; lands on the overview."""
        self.password_step(who)
        expect(self.page).to_have_url(self.base + "/console/mfa/enroll")
        totp = self.enroll_totp()
        expect(self.page).to_have_url(self.base + "/console/")
        return totp

    def bystander(self) -> str:
        """A device no test revokes (the fleet tests revoke the one playing "revoked")."""
        victim = self.fleet.device("revoked")
        return next(d for d in self.fleet.device_ids if d != victim)

    def cookie(self) -> dict[str, object]:
        (cookie,) = [c for c in self.context.cookies() if c["name"] == "__Host-tf_session"]
        return dict(cookie)

    def post(self, path: str, form: dict[str, str], *, origin: str | None = None) -> int:
        """POST ``form`` with this context's session cookie, outside the page; the status.

        The Origin is the console's unless given: what a forged cross-site form would lack.
        """
        ctx = ssl.create_default_context(cafile=str(self.fleet.srv.ca_bundle))
        headers = {"Origin": origin or self.base}
        cookies = {"__Host-tf_session": str(self.cookie()["value"])}
        with httpx.Client(verify=ctx, timeout=HTTP_TIMEOUT_S, cookies=cookies) as client:
            return client.post(self.base + path, data=form, headers=headers).status_code

    def csrf(self) -> str:
        return self.page.locator("input[name=csrf]").first.get_attribute("value") or ""


@contextmanager
def _session(fleet: SimFleet, pool: BrowserPool) -> Iterator[ConsoleSession]:
    context = pool.context(fleet.srv.home / "public" / "root-ca.pem")
    context.set_default_timeout(UI_TIMEOUT_MS)
    try:
        yield ConsoleSession(fleet=fleet, context=context, page=context.new_page())
    finally:
        context.close()
        fleet.srv.close_runtime()  # see console_fleet


@pytest.fixture
def console(console_fleet: SimFleet, browsers: BrowserPool) -> Iterator[ConsoleSession]:  # noqa: F811
    """A fresh browser context (no cookies) with one page on the fleet's console."""
    with _session(console_fleet, browsers) as session:
        yield session


@pytest.fixture
def other_console(console_fleet: SimFleet, browsers: BrowserPool) -> Iterator[ConsoleSession]:  # noqa: F811
    """A second, separate browser context (another operator at the same time)."""
    with _session(console_fleet, browsers) as session:
        yield session
