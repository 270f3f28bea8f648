"""Operators and tokens in the console: an admin adds an operator (one-time password), who
logs in, sets up TOTP and must change the password; a token's secret is shown once."""

from __future__ import annotations

import secrets

import pytest
from playwright.sync_api import Dialog, expect

from conftest import ConsoleSession, Operator
from trustfleet.errors import Unauthenticated
from trustfleet.services.auth import authenticate_token
from trustfleet.sim.fleet import utc_now

pytestmark = pytest.mark.integration

NEW_PASSWORD_CHARS = 24


def _accept(dialog: Dialog) -> None:
    dialog.accept()


def _logout(console: ConsoleSession) -> None:
    console.page.click("header form[action='/console/logout'] button")
    expect(console.page).to_have_url(console.base + "/console/login")


def test_an_added_operator_changes_the_one_time_password_then_is_disabled(
    console: ConsoleSession, other_console: ConsoleSession
) -> None:
    console.login_with_totp(console.add_operator("admin"))
    console.goto("/console/users")
    login = f"ops{secrets.token_hex(3)}"
    console.page.fill("input[name=login]", login)
    console.page.select_option("select[name=role]", "fleet-operator")
    console.page.click("form[action='/console/users'] button[type=submit]")
    one_time = console.page.inner_text("#one-time-password").strip()
    assert len(one_time) >= NEW_PASSWORD_CHARS // 2

    newcomer = Operator(login=login, password=one_time, role="fleet-operator")
    other_console.password_step(newcomer)
    expect(other_console.page).to_have_url(other_console.base + "/console/mfa/enroll")
    other_console.enroll_totp()
    expect(other_console.page).to_have_url(other_console.base + "/console/account/password")
    other_console.goto("/console/devices")  # nothing else until the password is changed
    expect(other_console.page).to_have_url(other_console.base + "/console/account/password")
    chosen = secrets.token_urlsafe(NEW_PASSWORD_CHARS)
    other_console.page.fill("input[name=old]", one_time)
    other_console.page.fill("input[name=new]", chosen)
    other_console.page.fill("input[name=again]", chosen)
    other_console.page.click("form[action='/console/account/password'] button[type=submit]")
    expect(other_console.page).to_have_url(other_console.base + "/console/account?done=password")

    console.goto("/console/users")
    console.page.on("dialog", _accept)
    row = console.page.locator("#operators tr", has_text=login)
    row.locator("button:text('disable')").click()
    expect(console.page).to_have_url(console.base + "/console/users?done=disable")
    expect(console.page.locator("#operators tr", has_text=login)).to_contain_text("disabled")

    other_console.goto("/console/devices")  # the disabled operator's session has ended
    expect(other_console.page).to_have_url(other_console.base + "/console/login")
    other_console.password_step(Operator(login=login, password=chosen, role="fleet-operator"))
    expect(other_console.page.locator(".error")).to_have_text("login failed")


def test_a_token_secret_is_shown_once_and_works_until_revoked(console: ConsoleSession) -> None:
    operator = console.add_operator("fleet-operator")
    console.login_with_totp(operator)
    console.goto("/console/tokens")
    console.page.fill("input[name=name]", "ci")
    console.page.select_option("select[name=role]", "fleet-operator")
    console.page.select_option("select[name=ttl]", "1 day")
    console.page.click("form[action='/console/tokens'] button[type=submit]")
    secret = console.page.inner_text("#token-secret").strip()
    assert secret.startswith("tf_")
    rt = console.fleet.srv.runtime
    principal = authenticate_token(rt, secret, now=utc_now())
    assert (principal.login, principal.role, principal.via) == (
        operator.login,
        "fleet-operator",
        "token",
    )

    console.goto("/console/tokens")
    assert secret not in console.page.content()  # shown once
    console.page.on("dialog", _accept)
    console.page.locator("#tokens button:text('Revoke')").click()
    expect(console.page.locator("#tokens tbody tr").first).to_contain_text("revoked")
    with pytest.raises(Unauthenticated):
        authenticate_token(rt, secret, now=utc_now())
