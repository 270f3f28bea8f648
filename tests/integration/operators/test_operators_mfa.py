"""Second factors on a real store: TOTP enrollment and login, passkeys with a software
authenticator (registration, login, a repeated signature counter refused), MFA reset."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pyotp
import pytest

from support.softpasskey import SoftPasskey
from trustfleet.errors import Conflict, PermissionDenied, Unauthenticated, VerificationFailed
from trustfleet.services import auth, operators
from trustfleet.services.runtime import Runtime

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"
ORIGIN = "https POST /console/login from 192.0.2.7:40000"
RP_ORIGIN = "https://console.example:8443"  # the fixture's [api] public_url


def _login(rt: Runtime, login: str, *, at: datetime = NOW) -> auth.LoginStep:
    return auth.login_password(rt, login=login, password=PASSWORD, origin=ORIGIN, now=at)


def _code(seed: str, at: datetime) -> str:
    return pyotp.TOTP(seed).at(at)


def _enrolled(rt: Runtime, login: str) -> tuple[str, auth.LoginStep]:
    """An operator with TOTP enrolled (at NOW) and its full session."""
    operators.add_operator(rt, login=login, role="admin", password=PASSWORD, now=NOW)
    step = _login(rt, login)
    assert step.view.stage == "mfa-enroll"
    seed, uri = auth.begin_totp_enrollment(rt, step.session_secret, now=NOW)
    assert len(seed) == 32 and uri.startswith("otpauth://totp/") and seed in uri
    full = auth.confirm_totp_enrollment(rt, step.session_secret, _code(seed, NOW), now=NOW)
    return seed, full


def _with_passkey(rt: Runtime, login: str) -> tuple[auth.LoginStep, SoftPasskey]:
    """An operator with TOTP and a passkey (named "k"), its full session and the passkey."""
    _seed, full = _enrolled(rt, login)
    key = SoftPasskey(origin=RP_ORIGIN)
    options = auth.passkey_registration_options(rt, full.session_secret, now=NOW)
    auth.finish_passkey_registration(rt, full.session_secret, key.create(options), name="k",
                                     now=NOW)  # fmt: skip
    return full, key


def test_totp_enrollment_then_a_login_with_a_code_used_once(rt: Runtime) -> None:
    seed, full = _enrolled(rt, "ann")
    assert full.view.stage == "full"
    assert operators.get_operator(rt, "ann").totp_enabled
    later = NOW + timedelta(minutes=5)
    step = _login(rt, "ann", at=later)
    assert step.view.stage == "password"
    with pytest.raises(PermissionDenied) as stage:
        auth.begin_totp_enrollment(rt, step.session_secret, now=later)
    assert stage.value.code == "auth.stage"
    with pytest.raises(Unauthenticated) as caught:
        auth.verify_totp(rt, step.session_secret, "000000" if _code(seed, later) != "000000"
                         else "111111", now=later)  # fmt: skip
    assert caught.value.code == "auth.login"
    done = auth.verify_totp(rt, step.session_secret, _code(seed, later), now=later)
    assert done.view.stage == "full" and done.session_secret != step.session_secret
    with pytest.raises(Unauthenticated):  # the old session id ended: no fixation
        auth.session_view(rt, step.session_secret, now=later)
    again = _login(rt, "ann", at=later)
    with pytest.raises(Unauthenticated):  # the same code twice
        auth.verify_totp(rt, again.session_secret, _code(seed, later), now=later)
    ok = auth.verify_totp(rt, again.session_secret, _code(seed, later + timedelta(seconds=30)),
                          now=later)  # fmt: skip
    assert ok.view.stage == "full"  # the next step is within the window


def test_totp_accepts_one_step_either_side_and_no_more(rt: Runtime) -> None:
    seed, _full = _enrolled(rt, "ann")
    at = NOW + timedelta(hours=1)
    for offset, accepted in ((-60, False), (-30, True), (30, True), (60, False)):
        step = _login(rt, "ann", at=at)
        code = _code(seed, at + timedelta(seconds=offset))
        if accepted:
            auth.verify_totp(rt, step.session_secret, code, now=at)
        else:
            with pytest.raises(Unauthenticated):
                auth.verify_totp(rt, step.session_secret, code, now=at)
        at += timedelta(minutes=2)


def test_totp_failures_count_towards_the_lockout(rt: Runtime) -> None:
    seed, _full = _enrolled(rt, "ann")
    step = _login(rt, "ann")
    right = _code(seed, NOW + timedelta(seconds=30))
    wrong = "123456" if right != "123456" else "654321"
    for _ in range(rt.settings.operators.max_failures):
        with pytest.raises(Unauthenticated):
            auth.verify_totp(rt, step.session_secret, wrong, now=NOW)
    with pytest.raises(Unauthenticated):  # locked: even the right code fails
        auth.verify_totp(rt, step.session_secret, right, now=NOW)
    with pytest.raises(Unauthenticated):  # and so does the password
        _login(rt, "ann")


def test_a_passkey_registers_and_logs_in_and_a_repeated_counter_is_refused(rt: Runtime) -> None:
    _seed, full = _enrolled(rt, "ann")
    key = SoftPasskey(origin=RP_ORIGIN)
    options = auth.passkey_registration_options(rt, full.session_secret, now=NOW)
    parsed = json.loads(options)
    assert parsed["rp"]["id"] == "console.example"
    assert parsed["authenticatorSelection"]["userVerification"] == "preferred"
    auth.finish_passkey_registration(rt, full.session_secret, key.create(options), name="yubi",
                                     now=NOW)  # fmt: skip
    assert operators.get_operator(rt, "ann").passkeys == 1
    with pytest.raises(VerificationFailed):  # the challenge was used
        auth.finish_passkey_registration(rt, full.session_secret, key.create(options),
                                         name="again", now=NOW)  # fmt: skip
    step = _login(rt, "ann")
    login_options = auth.passkey_login_options(rt, step.session_secret, now=NOW)
    done = auth.finish_passkey_login(rt, step.session_secret, key.get(login_options), now=NOW)
    assert done.view.stage == "full"
    step = _login(rt, "ann")
    login_options = auth.passkey_login_options(rt, step.session_secret, now=NOW)
    with pytest.raises(Unauthenticated):  # a clone: the counter did not grow
        auth.finish_passkey_login(rt, step.session_secret, key.get(login_options, advance=False),
                                  now=NOW)  # fmt: skip
    with pytest.raises(Unauthenticated):  # the challenge is gone with the failed try
        auth.finish_passkey_login(rt, step.session_secret, key.get(login_options), now=NOW)
    refused = _refusals(rt)
    assert refused[-2:] == ["auth.passkey.sign_count", "no challenge"]


def test_a_passkey_answer_for_another_origin_or_rp_or_key_is_refused(rt: Runtime) -> None:
    full, key = _with_passkey(rt, "ann")
    stranger = SoftPasskey(origin=RP_ORIGIN)
    answers = (
        lambda o: key.get(o, origin="https://evil.example:8443"),
        lambda o: key.get(o, rp_id="evil.example"),
        stranger.get,
        lambda o: "{not json",
    )
    for answer in answers:
        step = _login(rt, "ann")
        opts = auth.passkey_login_options(rt, step.session_secret, now=NOW)
        with pytest.raises(Unauthenticated):
            auth.finish_passkey_login(rt, step.session_secret, answer(opts), now=NOW)
        auth.logout(rt, step.session_secret, now=NOW)
    with pytest.raises(VerificationFailed):
        opts = auth.passkey_registration_options(rt, full.session_secret, now=NOW)
        other = SoftPasskey(origin="https://evil.example:8443")
        auth.finish_passkey_registration(rt, full.session_secret, other.create(opts), name="x",
                                         now=NOW)  # fmt: skip


def test_passkey_steps_need_their_stage(rt: Runtime) -> None:
    operators.add_operator(rt, login="bob", role="fleet-operator", password=PASSWORD, now=NOW)
    step = _login(rt, "bob")  # mfa-enroll
    with pytest.raises(PermissionDenied):
        auth.passkey_registration_options(rt, step.session_secret, now=NOW)
    with pytest.raises(PermissionDenied):
        auth.passkey_login_options(rt, step.session_secret, now=NOW)
    _seed, full = _enrolled(rt, "ann")
    step = _login(rt, "ann")
    with pytest.raises(Conflict):  # TOTP only, no passkey
        auth.passkey_login_options(rt, step.session_secret, now=NOW)
    del full


def test_reset_mfa_removes_the_factors_and_ends_sessions(rt: Runtime) -> None:
    full, _key = _with_passkey(rt, "ann")
    record = operators.reset_mfa(rt, "ann", now=NOW)
    assert (record.totp_enabled, record.passkeys) == (False, 0)
    with pytest.raises(Unauthenticated):
        auth.session_view(rt, full.session_secret, now=NOW)
    assert _login(rt, "ann").view.stage == "mfa-enroll"


def _refusals(rt: Runtime) -> list[str]:
    with rt.uow.begin(read_only=True) as tx:
        events = tx.events.list(limit=1000)
    return [
        str(e.details["reason"])
        for e in events
        if e.type == "operator.login" and e.outcome == "refused"
    ]
