"""Logging in to the console: password + TOTP, passkeys, and what a session may not do."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from conftest import ConsoleSession
from support.browser import add_virtual_authenticator

pytestmark = pytest.mark.integration


def test_password_then_totp_enrollment_then_a_totp_login(console: ConsoleSession) -> None:
    admin = console.add_operator("admin")
    console.login_with_totp(admin)
    expect(console.page.locator("header .who")).to_contain_text(admin.login)
    cookie = console.cookie()
    assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/"

    console.page.click("header form[action='/console/logout'] button")
    expect(console.page).to_have_url(console.base + "/console/login")
    assert console.goto("/console/devices") == 200  # back to the login page
    expect(console.page).to_have_url(console.base + "/console/login")


def test_a_passkey_is_registered_and_replaces_the_code(console: ConsoleSession) -> None:
    admin = console.add_operator("admin")
    authenticator = add_virtual_authenticator(console.context, console.page)
    assert authenticator
    console.login_with_totp(admin)
    console.goto("/console/account")
    console.page.fill("#passkey-name", "laptop")
    console.page.click("#passkey-register")
    expect(console.page).to_have_url(console.base + "/console/account?done=passkey")
    console.page.click("header form[action='/console/logout'] button")

    console.password_step(admin)
    expect(console.page).to_have_url(console.base + "/console/mfa")
    console.page.click("#passkey-login")
    expect(console.page).to_have_url(console.base + "/console/")
    expect(console.page.locator("header .who")).to_contain_text(admin.login)


def test_a_wrong_password_is_refused_with_one_message(console: ConsoleSession) -> None:
    admin = console.add_operator("admin")
    admin.password += "x"
    console.password_step(admin)
    expect(console.page.locator(".error")).to_have_text("login failed")
    assert not [c for c in console.context.cookies() if c["name"] == "__Host-tf_session"]


def test_an_auditor_reads_but_gets_403_on_an_action(console: ConsoleSession) -> None:
    auditor = console.add_operator("auditor")
    console.password_step(auditor)  # a read-only role: no second factor required
    expect(console.page).to_have_url(console.base + "/console/")
    device = console.bystander()
    assert console.goto(f"/console/devices/{device}") == 200
    expect(console.page.locator(".actions a")).to_have_count(0)
    assert console.goto(f"/console/devices/{device}/revoke") == 403
    form = {"csrf": console.csrf(), "reason": "keyCompromise"}
    assert console.post(f"/console/devices/{device}/revoke", form) == 403
    assert console.fleet.device_states([device])[device] == "enrolled"


def test_a_post_without_the_csrf_token_is_refused(console: ConsoleSession) -> None:
    admin = console.add_operator("admin")
    console.login_with_totp(admin)
    device = console.bystander()
    path = f"/console/devices/{device}/quarantine"
    for form, origin in (
        ({"reason": "test"}, None),  # no token
        ({"reason": "test", "csrf": "forged"}, None),  # a wrong one
        ({"reason": "test", "csrf": console.csrf()}, "https://evil.example"),  # another site
    ):
        assert console.post(path, form, origin=origin) == 403, (form, origin)
    assert console.fleet.quarantine_of(device) is None


def test_security_headers_on_console_pages(console: ConsoleSession) -> None:
    response = console.page.goto(console.base + "/console/login")
    assert response is not None
    headers = response.headers
    csp = headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert "'unsafe-inline'" not in csp
    assert headers["strict-transport-security"].startswith("max-age=")
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["cache-control"] == "no-store"
    assert headers["referrer-policy"] == "no-referrer"
    assert console.page.evaluate("window.isSecureContext")
