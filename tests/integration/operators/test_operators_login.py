"""Password logins, throttling, sessions and API tokens on a real store (SQLite, PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from trustfleet.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from trustfleet.services import api_tokens, auth, operators
from trustfleet.services.runtime import Runtime

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"
ORIGIN = "https POST /console/login from 192.0.2.7:40000"


def _login(rt: Runtime, login: str, password: str = PASSWORD, *, at: datetime = NOW,
           origin: str = ORIGIN) -> auth.LoginStep:  # fmt: skip
    return auth.login_password(rt, login=login, password=password, origin=origin, now=at)


def _refused(rt: Runtime, login: str, password: str, *, at: datetime = NOW,
             origin: str = ORIGIN) -> Unauthenticated:  # fmt: skip
    with pytest.raises(Unauthenticated) as caught:
        _login(rt, login, password, at=at, origin=origin)
    assert (caught.value.message, caught.value.code) == ("login failed", "auth.login")
    return caught.value


def _events(rt: Runtime, type: str) -> list[tuple[str, str, dict[str, object]]]:
    with rt.uow.begin(read_only=True) as tx:
        events = tx.events.list(limit=1000)
    return [(e.outcome, e.subject, dict(e.details)) for e in events if e.type == type]


def test_a_login_opens_a_session_at_the_stage_the_role_needs(rt: Runtime) -> None:
    operators.add_operator(rt, login="ann", role="auditor", password=PASSWORD, now=NOW)
    operators.add_operator(rt, login="bob", role="fleet-operator", password=PASSWORD, now=NOW)
    ann = _login(rt, "ann")
    assert ann.view.stage == "full"  # read-only: no second factor needed
    assert ann.view.principal == auth.Principal(
        operator_id=ann.view.principal.operator_id, login="ann", role="auditor", via="session"
    )
    assert ann.view.principal.actor == "operator:ann"
    assert len(ann.session_secret) >= 43
    assert _login(rt, "bob").view.stage == "mfa-enroll"  # may change things: must enroll
    assert operators.get_operator(rt, "ann").last_login_at == NOW
    ok = [e for e in _events(rt, "operator.login") if e[0] == "ok"]
    assert ok == [
        ("ok", "operator:ann", {"stage": "full", "factor": "password"}),
        ("ok", "operator:bob", {"stage": "mfa-enroll", "factor": "password"}),
    ]


def test_every_failure_looks_the_same_and_says_why_only_in_the_event(rt: Runtime) -> None:
    operators.add_operator(rt, login="ann", role="auditor", password=PASSWORD, now=NOW)
    operators.add_operator(rt, login="old", role="auditor", password=PASSWORD, now=NOW)
    operators.disable_operator(rt, "old", now=NOW)
    _refused(rt, "ann", "wrong password!")
    _refused(rt, "nobody", PASSWORD)
    _refused(rt, "old", PASSWORD)
    _refused(rt, "ann", "x" * 10_000)
    reasons = [e[2]["reason"] for e in _events(rt, "operator.login")]
    assert reasons == ["wrong password", "unknown login", "disabled", "wrong password"]
    for _outcome, _subject, details in _events(rt, "operator.login"):
        assert PASSWORD not in str(details) and "wrong password!" not in str(details)


def test_failures_lock_the_login_even_for_the_right_password_then_it_unlocks(rt: Runtime) -> None:
    operators.add_operator(rt, login="ann", role="auditor", password=PASSWORD, now=NOW)
    settings = rt.settings.operators
    for i in range(settings.max_failures):
        _refused(rt, "ann", "not the password", at=NOW + timedelta(seconds=i),
                 origin=f"x from 198.51.100.{i}:1")  # fmt: skip
    locked_at = NOW + timedelta(seconds=settings.max_failures)
    _refused(rt, "ann", PASSWORD, at=locked_at)
    assert _events(rt, "operator.login")[-1][2]["reason"] == "locked"
    unlocked = NOW + timedelta(seconds=settings.max_failures - 1 + settings.lockout_s)
    assert _login(rt, "ann", at=unlocked).view.stage == "full"


def test_an_unknown_login_is_throttled_like_a_known_one(rt: Runtime) -> None:
    for i in range(rt.settings.operators.max_failures):
        _refused(rt, "ghost", PASSWORD, at=NOW, origin=f"x from 198.51.100.{i}:1")
    _refused(rt, "ghost", PASSWORD, at=NOW, origin="x from 203.0.113.1:1")
    assert _events(rt, "operator.login")[-1][2]["reason"] == "locked"


def test_failures_from_one_address_lock_that_address_for_every_login(rt: Runtime) -> None:
    operators.add_operator(rt, login="ann", role="auditor", password=PASSWORD, now=NOW)
    for i in range(rt.settings.operators.max_failures):
        _refused(rt, f"guess{i}", "not the password")
    _refused(rt, "ann", PASSWORD)  # the same address
    assert _login(rt, "ann", origin="x from 203.0.113.9:2").view.stage == "full"


def test_failures_outside_the_window_do_not_add_up(rt: Runtime) -> None:
    operators.add_operator(rt, login="ann", role="auditor", password=PASSWORD, now=NOW)
    window = timedelta(seconds=rt.settings.operators.failure_window_s)
    for i in range(rt.settings.operators.max_failures - 1):
        _refused(rt, "ann", "not the password", at=NOW + i * window)
    assert _login(rt, "ann", at=NOW + 10 * window).view.stage == "full"


def test_a_success_resets_the_count_of_the_login(rt: Runtime) -> None:
    operators.add_operator(rt, login="ann", role="auditor", password=PASSWORD, now=NOW)
    max_failures = rt.settings.operators.max_failures
    for _ in range(max_failures - 1):
        _refused(rt, "ann", "not the password", origin="x from 198.51.100.1:1")
    _login(rt, "ann", origin="x from 198.51.100.2:1")
    for _ in range(max_failures - 1):
        _refused(rt, "ann", "not the password", origin="x from 198.51.100.3:1")
    assert _login(rt, "ann", origin="x from 198.51.100.4:1").view.stage == "full"


def test_sessions_end_when_idle_at_the_absolute_timeout_and_at_logout(rt: Runtime) -> None:
    operators.add_operator(rt, login="ann", role="auditor", password=PASSWORD, now=NOW)
    settings = rt.settings.operators
    idle, absolute = (timedelta(seconds=settings.session_idle_s),
                      timedelta(seconds=settings.session_absolute_s))  # fmt: skip
    secret = _login(rt, "ann").session_secret
    view = auth.session_view(rt, secret, now=NOW + idle - timedelta(seconds=1))
    assert view.idle_expires_at == NOW + 2 * idle - timedelta(seconds=1)  # refreshed
    assert view.expires_at == NOW + absolute
    with pytest.raises(Unauthenticated) as caught:
        auth.session_view(rt, secret, now=NOW + 3 * idle)
    assert caught.value.code == "auth.session"
    secret = _login(rt, "ann").session_secret
    at = NOW
    while at + idle < NOW + absolute:  # kept busy: the absolute timeout still ends it
        at += idle - timedelta(seconds=1)
        auth.session_view(rt, secret, now=min(at, NOW + absolute - timedelta(seconds=1)))
    with pytest.raises(Unauthenticated):
        auth.session_view(rt, secret, now=NOW + absolute)
    secret = _login(rt, "ann").session_secret
    auth.logout(rt, secret, now=NOW)
    with pytest.raises(Unauthenticated):
        auth.session_view(rt, secret, now=NOW)
    auth.logout(rt, secret, now=NOW)  # again: nothing happens
    with pytest.raises(Unauthenticated):
        auth.session_view(rt, "not a session", now=NOW)


def test_the_csrf_token_belongs_to_the_session(rt: Runtime) -> None:
    operators.add_operator(rt, login="ann", role="auditor", password=PASSWORD, now=NOW)
    one, two = _login(rt, "ann"), _login(rt, "ann")
    view = auth.session_view(rt, one.session_secret, now=NOW)
    auth.check_csrf(view, one.view.csrf_token)
    for wrong in (None, "", two.view.csrf_token):
        with pytest.raises(PermissionDenied) as caught:
            auth.check_csrf(view, wrong)
        assert caught.value.code == "auth.csrf"


def test_disabling_ends_sessions_and_tokens_and_enabling_leaves_tokens_revoked(
    rt: Runtime,
) -> None:
    operators.add_operator(rt, login="ann", role="auditor", password=PASSWORD, now=NOW)
    secret = _login(rt, "ann").session_secret
    _record, token = api_tokens.create_token(
        rt, owner="ann", name="ci", role="auditor", ttl_s=3600, now=NOW
    )
    assert auth.authenticate_token(rt, token, now=NOW).role == "auditor"
    assert operators.disable_operator(rt, "ann", now=NOW).disabled
    with pytest.raises(Unauthenticated):
        auth.session_view(rt, secret, now=NOW)
    with pytest.raises(Unauthenticated):
        auth.authenticate_token(rt, token, now=NOW)
    assert not operators.enable_operator(rt, "ann", now=NOW).disabled
    with pytest.raises(Unauthenticated):
        auth.authenticate_token(rt, token, now=NOW)
    assert _login(rt, "ann").view.stage == "full"
    types = [t for t in ("operator.disabled", "operator.enabled") if _events(rt, t)]
    assert types == ["operator.disabled", "operator.enabled"]


def test_tokens_authenticate_until_they_expire_or_are_revoked(rt: Runtime) -> None:
    operators.add_operator(rt, login="ann", role="admin", password=PASSWORD, now=NOW)
    record, token = api_tokens.create_token(
        rt, owner="ann", name="scraper", role="metrics", ttl_s=600, now=NOW
    )
    assert token.startswith(f"tf_{record.id}_") and len(token) == 3 + 12 + 1 + 43
    principal = auth.authenticate_token(rt, token, now=NOW + timedelta(seconds=5))
    assert (principal.role, principal.via, principal.token_id) == ("metrics", "token", record.id)
    assert principal.actor == f"operator:ann token:{record.id}"
    listed = api_tokens.list_tokens(rt, owner="ann", limit=10).items
    assert [t.last_used_at for t in listed] == [NOW + timedelta(seconds=5)]
    for wrong in (token[:-1] + ("A" if token[-1] != "A" else "B"), "tf_x", "", token + "x"):
        with pytest.raises(Unauthenticated) as caught:
            auth.authenticate_token(rt, wrong, now=NOW)
        assert (caught.value.message, caught.value.code) == (
            "invalid or expired credentials", "auth.unauthenticated",
        )  # fmt: skip
    with pytest.raises(Unauthenticated):
        auth.authenticate_token(rt, token, now=NOW + timedelta(seconds=600))
    with pytest.raises(NotFound):
        api_tokens.revoke_token(rt, record.id, now=NOW, owner="someone-else")
    assert api_tokens.revoke_token(rt, record.id, now=NOW).revoked_at == NOW
    with pytest.raises(Unauthenticated):
        auth.authenticate_token(rt, token, now=NOW)
    assert [e[2]["token"] for e in _events(rt, "token.revoked")] == [record.id]


def test_a_token_holds_no_permission_its_owner_lacks(rt: Runtime) -> None:
    operators.add_operator(rt, login="fo", role="fleet-operator", password=PASSWORD, now=NOW)
    for role in ("admin", "metrics", "auditor"):
        with pytest.raises(PermissionDenied) as caught:
            api_tokens.create_token(rt, owner="fo", name="t", role=role, ttl_s=600, now=NOW)
        assert caught.value.code == "token.role"
    api_tokens.create_token(rt, owner="fo", name="t", role="fleet-operator", ttl_s=600, now=NOW)
    max_ttl = rt.settings.operators.token_max_ttl_s
    with pytest.raises(InvalidInput):
        api_tokens.create_token(rt, owner="fo", name="t", role="fleet-operator",
                                ttl_s=max_ttl + 1, now=NOW)  # fmt: skip
    with pytest.raises(NotFound):
        api_tokens.create_token(rt, owner="nobody", name="t", role="auditor", ttl_s=600, now=NOW)


def test_operators_are_managed_and_listed_in_pages(rt: Runtime) -> None:
    record, one_time = operators.add_operator(rt, login="ann", role="admin", password=None, now=NOW)
    assert record.must_change_password and one_time is not None and len(one_time) >= 12
    assert _login(rt, "ann", one_time).view.stage == "mfa-enroll"
    operators.change_password(rt, login="ann", old=one_time, new=PASSWORD, now=NOW)
    assert not operators.get_operator(rt, "ann").must_change_password
    with pytest.raises(Unauthenticated):
        operators.change_password(rt, login="ann", old=one_time, new=PASSWORD + "!", now=NOW)
    with pytest.raises(InvalidInput):
        operators.change_password(rt, login="ann", old=PASSWORD, new="short", now=NOW)
    with pytest.raises(Conflict):
        operators.add_operator(rt, login="ann", role="admin", password=PASSWORD, now=NOW)
    for bad_login, bad_role in (("Ann", "admin"), ("ann2", "metrics"), ("ann3", "root")):
        with pytest.raises(InvalidInput):
            operators.add_operator(rt, login=bad_login, role=bad_role, password=PASSWORD, now=NOW)
    with pytest.raises(InvalidInput):
        operators.add_operator(rt, login="bob", role="auditor", password="too short", now=NOW)
    for name in ("bob", "cid", "dan"):
        operators.add_operator(rt, login=name, role="auditor", password=PASSWORD, now=NOW)
    first = operators.list_operators(rt, limit=3)
    assert [o.login for o in first.items] == ["ann", "bob", "cid"] and first.next_cursor
    rest = operators.list_operators(rt, limit=3, cursor=first.next_cursor)
    assert [o.login for o in rest.items] == ["dan"] and rest.next_cursor is None
    secret = _login(rt, "bob").session_secret
    assert operators.set_role(rt, "bob", "fleet-operator", now=NOW).role == "fleet-operator"
    with pytest.raises(Unauthenticated):  # opened under the old role
        auth.session_view(rt, secret, now=NOW)
    with pytest.raises(InvalidInput):
        operators.set_role(rt, "bob", "metrics", now=NOW)
    with pytest.raises(NotFound) as caught:
        operators.get_operator(rt, "nobody")
    assert caught.value.code == "operator.not_found"
    assert [e[2] for e in _events(rt, "operator.role_changed")] == [
        {"from": "auditor", "to": "fleet-operator"}
    ]


def test_the_last_enabled_admin_is_neither_disabled_nor_demoted(rt: Runtime) -> None:
    operators.add_operator(rt, login="root", role="admin", password=PASSWORD, now=NOW)
    with pytest.raises(Conflict) as caught:
        operators.disable_operator(rt, "root", now=NOW)
    assert caught.value.code == "operator.last_admin"
    with pytest.raises(Conflict):
        operators.set_role(rt, "root", "auditor", now=NOW)
    operators.add_operator(rt, login="second", role="admin", password=PASSWORD, now=NOW)
    assert operators.disable_operator(rt, "root", now=NOW).disabled
    with pytest.raises(Conflict):
        operators.set_role(rt, "second", "auditor", now=NOW)


def test_a_token_stops_working_when_its_owner_loses_a_permission_it_needs(rt: Runtime) -> None:
    operators.add_operator(rt, login="root", role="admin", password=PASSWORD, now=NOW)
    operators.add_operator(rt, login="ann", role="admin", password=PASSWORD, now=NOW)
    _record, token = api_tokens.create_token(
        rt, owner="ann", name="ci", role="fleet-operator", ttl_s=600, now=NOW
    )
    operators.set_role(rt, "ann", "security-officer", now=NOW)  # no devices.command
    with pytest.raises(Unauthenticated):
        auth.authenticate_token(rt, token, now=NOW)
    operators.set_role(rt, "ann", "fleet-operator", now=NOW)
    assert auth.authenticate_token(rt, token, now=NOW).role == "fleet-operator"


def test_wrong_old_passwords_count_towards_the_lockout(rt: Runtime) -> None:
    operators.add_operator(rt, login="ann", role="auditor", password=PASSWORD, now=NOW)
    for _ in range(rt.settings.operators.max_failures):
        with pytest.raises(Unauthenticated):
            operators.change_password(rt, login="ann", old="not the password", new="x" * 12,
                                      now=NOW)  # fmt: skip
    with pytest.raises(Unauthenticated):
        operators.change_password(rt, login="ann", old=PASSWORD, new="x" * 12, now=NOW)
    _refused(rt, "ann", PASSWORD)  # the login is locked too


def test_malformed_logins_and_origins_fail_like_any_other_login(rt: Runtime) -> None:
    operators.add_operator(rt, login="ann", role="auditor", password=PASSWORD, now=NOW)
    for login in ("ann\x00", "A" * 10_000, "ann\n", ""):
        _refused(rt, login, PASSWORD, origin="https POST /console/login\x00 from 198.51.100.9:1")
    assert {e[1] for e in _events(rt, "operator.login")} == {"operator:(malformed)"}
    step = _login(rt, "ann", origin="https POST /x\x00\x1b from [2001:db8::7]:1")
    assert step.view.stage == "full"


def test_every_refused_login_costs_one_argon2_verification(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from argon2 import PasswordHasher

    operators.add_operator(rt, login="ann", role="auditor", password=PASSWORD, now=NOW)
    operators.add_operator(rt, login="old", role="auditor", password=PASSWORD, now=NOW)
    operators.disable_operator(rt, "old", now=NOW)
    calls: list[str] = []
    verify = PasswordHasher.verify

    def counted(self: PasswordHasher, hash: str, password: str | bytes) -> bool:
        calls.append(hash[:9])
        return verify(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", counted)
    for login, password in (("ann", "wrong password"), ("nobody", PASSWORD), ("old", PASSWORD),
                            ("ann\x00", PASSWORD)):  # fmt: skip
        calls.clear()
        _refused(rt, login, password)
        assert calls == ["$argon2id"], login
