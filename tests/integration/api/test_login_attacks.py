"""Attacks on the operator plane's credentials, on a real server's store and API.

* Brute force on the password login (the auth service the console's ``POST /console/login``
  calls): after ``[operators] max_failures`` the login is locked, the right password is refused
  while it is, and an unknown login fails exactly like an existing one. Times are passed in
  (``now``), never waited for.
* CSRF: a console session's cookie changes nothing through the API without its own session's
  ``X-CSRF-Token``; each refusal is recorded and nothing else is written.
* Dead credentials: an expired, revoked or wrong-secret token, a disabled operator's token, an
  ended or unfinished session: 401.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
import pytest
from apikit import ApiKit, assert_problem

from support.api import row_counts
from trustfleet.errors import Unauthenticated
from trustfleet.services import api_tokens, auth, operators

pytestmark = pytest.mark.integration

NOW: Final = datetime.now(UTC)
PASSWORD: Final = "correct horse battery staple 12"
COOKIE: Final = "__Host-tf_session"


def _login(api: ApiKit, login: str, password: str, *, origin: str, at: datetime = NOW) -> Any:
    """The login step, or the Unauthenticated error it raised."""
    try:
        return auth.login_password(
            api.server.runtime, login=login, password=password, origin=origin, now=at
        )
    except Unauthenticated as exc:
        return exc


def _failure(error: Any) -> tuple[Any, ...]:
    """What a caller of the login sees of a refusal (the detail is only in the event)."""
    assert isinstance(error, Unauthenticated), error
    return (type(error), error.message, error.code, error.hint, error.category, str(error))


def _add(api: ApiKit, login: str, role: str = "auditor") -> None:
    operators.add_operator(api.server.runtime, login=login, role=role, password=PASSWORD, now=NOW)


def _refusals(api: ApiKit, login: str) -> list[str]:
    with api.server.runtime.uow.begin(read_only=True) as tx:
        events = tx.events.list(after_id=0, limit=1000)
    return [
        e.details["reason"]
        for e in events
        if e.type == "operator.login"
        and e.subject == f"operator:{login}"
        and e.outcome == "refused"
    ]


def test_brute_force_locks_the_login_and_the_right_password_is_refused(api: ApiKit) -> None:
    _add(api, "brute")
    settings = api.server.runtime.settings.operators
    expected = _failure(_login(api, "brute", "guess-0", origin="198.51.100.1"))
    for n in range(1, settings.max_failures):
        assert _failure(_login(api, "brute", f"guess-{n}", origin=f"198.51.100.{n + 1}")) == (
            expected
        )
    locked = _login(api, "brute", PASSWORD, origin="203.0.113.9")
    assert _failure(locked) == expected
    assert _refusals(api, "brute") == ["wrong password"] * settings.max_failures + ["locked"]
    later = NOW + timedelta(seconds=settings.lockout_s + 1)
    step = _login(api, "brute", PASSWORD, origin="203.0.113.9", at=later)
    assert isinstance(step, auth.LoginStep), step


def test_an_address_spraying_logins_is_locked_for_every_login(api: ApiKit) -> None:
    _add(api, "sprayed")
    settings = api.server.runtime.settings.operators
    for n in range(settings.max_failures):
        _failure(_login(api, f"nobody-{n}", "guess", origin="192.0.2.66"))
    _failure(_login(api, "sprayed", PASSWORD, origin="192.0.2.66"))
    assert isinstance(_login(api, "sprayed", PASSWORD, origin="192.0.2.67"), auth.LoginStep)


def test_an_unknown_login_fails_exactly_like_an_existing_one(api: ApiKit) -> None:
    _add(api, "known")
    _add(api, "gone")
    operators.disable_operator(api.server.runtime, "gone", now=NOW)
    refusals = {
        "wrong password": _login(api, "known", "wrong", origin="192.0.2.10"),
        "unknown login": _login(api, "unknown", "wrong", origin="192.0.2.11"),
        "unknown, right shape": _login(api, "unknown", PASSWORD, origin="192.0.2.12"),
        "overlong login": _login(api, "x" * 500, PASSWORD, origin="192.0.2.13"),
        "disabled": _login(api, "gone", PASSWORD, origin="192.0.2.14"),
    }
    seen = {name: _failure(error) for name, error in refusals.items()}
    assert len(set(seen.values())) == 1, seen
    assert _refusals(api, "known") == ["wrong password"]
    assert _refusals(api, "unknown") == ["unknown login", "unknown login"]
    assert _refusals(api, "gone") == ["disabled"]


def _session(api: ApiKit, login: str, origin: str) -> tuple[str, str]:
    step = _login(api, login, PASSWORD, origin=origin, at=datetime.now(UTC))
    assert isinstance(step, auth.LoginStep) and step.view.stage == "full", step
    return step.session_secret, step.view.csrf_token


CsrfHeader = Callable[[str, str, str], dict[str, str]]
CSRF_CASES: Final[dict[str, CsrfHeader]] = {
    "missing": lambda _own, _other_session, _other_operator: {},
    "empty": lambda _own, _s, _o: {"x-csrf-token": ""},
    "wrong": lambda own, _s, _o: {"x-csrf-token": own[:-2] + ("AA" if own[-2:] != "AA" else "BB")},
    "another-session": lambda _own, other_session, _o: {"x-csrf-token": other_session},
    "another-operator": lambda _own, _s, other_operator: {"x-csrf-token": other_operator},
    "in-a-cookie": lambda own, _s, _o: {"cookie": f"x-csrf-token={own}"},
}


@pytest.fixture(scope="module")
def sessions(api: ApiKit) -> dict[str, tuple[str, str]]:
    _add(api, "csrf-a")
    _add(api, "csrf-b")
    return {
        "own": _session(api, "csrf-a", "192.0.2.30"),
        "other-session": _session(api, "csrf-a", "192.0.2.31"),
        "other-operator": _session(api, "csrf-b", "192.0.2.32"),
    }


@pytest.mark.parametrize("method", ["POST /tokens", "DELETE /tokens/{token}"])
@pytest.mark.parametrize("case", CSRF_CASES, ids=CSRF_CASES.keys())
def test_a_session_without_its_own_csrf_token_changes_nothing(
    api: ApiKit, sessions: dict[str, tuple[str, str]], case: str, method: str
) -> None:
    secret, own = sessions["own"]
    token_id = api_tokens.create_token(
        api.server.runtime, owner="csrf-a", name="kept", role="auditor", ttl_s=3600, now=NOW
    )[0].id
    verb, path = method.split(" ")
    headers = CSRF_CASES[case](own, sessions["other-session"][1], sessions["other-operator"][1])
    headers["cookie"] = "; ".join(filter(None, [headers.get("cookie"), f"{COOKIE}={secret}"]))
    before, last = row_counts(api.server), api.last_event_id()
    with api.client(None) as client:
        response = client.request(
            verb, api.url + path.format(token=token_id), json={"name": "x"} if verb == "POST"
            else None, headers=headers,
        )  # fmt: skip
    assert_problem(response, 403, "auth.csrf")
    (refused,) = api.events(after_id=last, type_="operator.refused")
    assert refused.actor == "operator:csrf-a" and refused.details["code"] == "auth.csrf"
    assert row_counts(api.server) == before | {"security_events": before["security_events"] + 1}
    with api.client(None) as client:  # a read needs no CSRF token, and the token still works
        mine = client.get("/tokens", headers={"cookie": f"{COOKIE}={secret}"}).json()["items"]
    assert [t["revoked_at"] for t in mine if t["id"] == token_id] == [None]


def _expired(api: ApiKit) -> str:
    long_ago = datetime.now(UTC) - timedelta(days=2)
    owner = api.operator("auditor")
    return api_tokens.create_token(
        api.server.runtime, owner=owner, name="old", role="auditor", ttl_s=3600, now=long_ago
    )[1]


def _revoked(api: ApiKit) -> str:
    secret = api.token("auditor", fresh=True)
    api_tokens.revoke_token(api.server.runtime, secret.split("_")[1], now=datetime.now(UTC))
    return secret


def _wrong_secret(api: ApiKit) -> str:
    secret = api.token("auditor", fresh=True)
    return secret[:-4] + ("AAAA" if not secret.endswith("AAAA") else "BBBB")


def _disabled_owner(api: ApiKit) -> str:
    _add(api, "leaver")
    secret = api_tokens.create_token(
        api.server.runtime, owner="leaver", name="ci", role="auditor", ttl_s=3600,
        now=datetime.now(UTC),
    )[1]  # fmt: skip
    operators.disable_operator(api.server.runtime, "leaver", now=datetime.now(UTC))
    return secret


DEAD_TOKENS: Final[dict[str, Callable[[ApiKit], str]]] = {
    "expired": _expired,
    "revoked": _revoked,
    "wrong-secret": _wrong_secret,
    "disabled-owner": _disabled_owner,
}


@pytest.mark.parametrize("make", DEAD_TOKENS.values(), ids=DEAD_TOKENS.keys())
def test_a_dead_token_is_401(api: ApiKit, make: Callable[[ApiKit], str]) -> None:
    secret = make(api)
    with api.client(None, authorization=f"Bearer {secret}") as client:
        for response in (client.get("/me"), client.post("/tokens", json={"name": "again"})):
            assert_problem(response, 401, "auth.unauthenticated")
            assert response.headers["www-authenticate"] == "Bearer"


def test_an_ended_or_unfinished_session_is_401(api: ApiKit) -> None:
    _add(api, "ender")
    secret, _csrf = _session(api, "ender", "192.0.2.40")
    auth.logout(api.server.runtime, secret, now=datetime.now(UTC))
    _add(api, "no-mfa-yet", role="fleet-operator")
    step = _login(api, "no-mfa-yet", PASSWORD, origin="192.0.2.41", at=datetime.now(UTC))
    assert step.view.stage == "mfa-enroll", step
    for cookie in (secret, step.session_secret):
        with api.client(None, cookie=f"{COOKIE}={cookie}") as client:
            assert_problem(client.get("/me"), 401, "auth.session")


def _console_login(api: ApiKit, login: str, password: str) -> httpx.Response:
    """``POST /console/login`` as the console's own login form sends it."""
    public = urlsplit(api.server.runtime.settings.api.public_url)
    headers = {"origin": f"{public.scheme}://{public.netloc}", "sec-fetch-site": "same-origin"}
    with httpx.Client(verify=api.server.ssl_context(), timeout=60) as client:
        return client.post(
            api.server.base_url + "/console/login",
            data={"login": login, "password": password},
            headers=headers,
        )


def _seen(response: httpx.Response) -> tuple[int, str, list[tuple[str, str]]]:
    headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() != "date"]
    return response.status_code, response.text, sorted(headers)


def test_console_login_locks_and_answers_an_unknown_login_the_same(api: ApiKit) -> None:
    """Last in this module: the brute force locks the test client's address too."""
    with httpx.Client(verify=api.server.ssl_context(), timeout=60) as client:
        if client.get(api.server.base_url + "/console/login").status_code == 404:
            pytest.skip("no web console on this branch (r12/console)")
    _add(api, "web-brute")
    first = _seen(_console_login(api, "web-brute", "guess-0"))
    assert first[0] == 401 and "login failed" in first[1]
    assert not [k for k, _ in first[2] if k.lower() == "set-cookie"]
    assert _seen(_console_login(api, "web-nobody", "guess-0")) == first
    for n in range(1, api.server.runtime.settings.operators.max_failures):
        assert _seen(_console_login(api, "web-brute", f"guess-{n}")) == first
    assert _seen(_console_login(api, "web-brute", PASSWORD)) == first
    assert _refusals(api, "web-brute")[-1] == "locked"
