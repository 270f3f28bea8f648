"""Bad input to the management API on a real server: each case is refused with a 4xx problem
that names a code, and writes nothing.

"Nothing" is counted: the rows of every table a request could write (events, operators, tokens,
sessions, commands, devices, certificates, campaigns, releases) are the same before and after,
except the one ``operator.refused`` event the API records when a service refuses a change (a
request FastAPI refuses before any service runs records none).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import pytest
from apikit import PROBLEM, ApiKit, assert_problem

from support.api import row_counts

pytestmark = pytest.mark.integration

JSON: Final = {"content-type": "application/json"}
CAMPAIGN: Final = b'{"version": "1.0.0", "waves": [100], "max_failure_rate": 0.1'


@dataclass(frozen=True)
class Case:
    """A request (path under /api/v1) and what it must get: status, code, a refusal event."""

    method: str
    path: str
    status: int
    code: str
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON))
    refused_event: bool = False


CASES: Final = {
    # bodies
    "malformed-json": Case("POST", "/campaigns", 400, "api.invalid", CAMPAIGN),
    "json-not-an-object": Case("POST", "/tokens", 400, "api.invalid", b'["name", "ci"]'),
    "empty-body": Case("POST", "/tokens", 400, "api.invalid", b""),
    "wrong-types": Case(
        "POST", "/campaigns", 400, "api.invalid",
        b'{"version": 1, "waves": "all", "max_failure_rate": "high"}',
    ),
    "out-of-range": Case(
        "POST", "/campaigns", 400, "api.invalid",
        b'{"version": "1.0.0", "waves": [100], "max_failure_rate": 7}',
    ),
    "nan": Case(
        "POST", "/campaigns", 400, "api.invalid",
        b'{"version": "1.0.0", "waves": [100], "max_failure_rate": NaN}',
    ),
    "huge-integer": Case(
        "POST", "/campaigns", 400, "api.invalid",
        b'{"version": "1.0.0", "waves": [100], "max_failure_rate": 0.1, "device_timeout_s": 1'
        + b"0" * 400 + b"}",
    ),
    "unknown-field": Case(
        "POST", "/users", 400, "api.invalid", b'{"login": "eve", "role": "admin", "uid": 0}'
    ),
    "deeply-nested": Case("POST", "/tokens", 400, "api.invalid", b'{"name": ' + b"[" * 5000),
    "non-utf8-body": Case("POST", "/tokens", 400, "api.invalid", b'{"name": "\xff\xfe"}'),
    "form-not-json": Case(
        "POST", "/tokens", 400, "api.invalid", b"name=ci",
        {"content-type": "application/x-www-form-urlencoded"},
    ),
    "unknown-role": Case(
        "POST", "/users", 400, "api.invalid", b'{"login": "eve", "role": "root"}',
    ),
    "traversal-login": Case(
        "POST", "/users", 400, "api.invalid", b'{"login": "../../etc/passwd", "role": "auditor"}',
    ),
    "unknown-command": Case(
        "POST", "/devices/{device}/commands", 400, "api.invalid", b'{"name": "reboot"}'
    ),
    "taken-login": Case(
        "POST", "/users", 409, "store.duplicate", b'{"login": "op-admin", "role": "auditor"}',
        refused_event=True,
    ),
    "unknown-device-revoked": Case(
        "POST", "/devices/no-such-device/revoke", 404, "store.device.not_found", b"{}",
        refused_event=True,
    ),
    # lists
    "huge-limit": Case("GET", "/devices?limit=1000000000000000000000", 400, "api.invalid"),
    "negative-limit": Case("GET", "/events?limit=-1", 400, "api.invalid"),
    "zero-limit": Case("GET", "/users?limit=0", 400, "api.invalid"),
    "text-limit": Case("GET", "/tokens?limit=all", 400, "api.invalid"),
    "bad-cursor": Case("GET", "/devices?cursor=abc", 400, "api.invalid"),
    "negative-cursor": Case("GET", "/events?cursor=-5", 400, "api.invalid"),
    "bad-release-cursor": Case("GET", "/releases?cursor=zz", 400, "api.invalid"),
    "long-cursor": Case("GET", "/devices?cursor=" + "9" * 500, 400, "api.invalid"),
    "unknown-parameter": Case("GET", "/devices?colour=red", 400, "api.unknown_parameter"),
    "unknown-parameter-on-change": Case(
        "POST", "/tokens?dry_run=1", 400, "api.unknown_parameter", b'{"name": "ci"}'
    ),
    "unknown-sort": Case("GET", "/devices?sort=colour", 400, "api.invalid"),
    "unknown-event-sort": Case("GET", "/events?sort=type", 400, "api.invalid"),
    "bad-boolean-filter": Case("GET", "/devices?online=maybe", 400, "api.invalid"),
    "bad-enum-filter": Case("GET", "/devices?attestation=perhaps", 400, "api.invalid"),
    "bad-date-filter": Case("GET", "/events?since=yesterday", 400, "api.invalid"),
    "non-utf8-query": Case("GET", "/devices?search=%FF%FE", 400, "api.invalid"),
    # ids in paths
    "traversal-device": Case("GET", "/devices/..%2F..%2Fetc%2Fpasswd", 404, "api.not_found"),
    "dotdot-device": Case("GET", "/devices/%2E%2E/users", 404, "api.not_found"),
    "backslash-device": Case("GET", "/devices/..%5C..%5Cboot.ini", 400, "api.invalid"),
    "newline-device": Case("GET", "/devices/a%0Ab/certificates", 404, "api.not_found"),
    "nul-device": Case("GET", "/devices/a%00bcdefgh", 400, "api.invalid"),
    "long-device": Case("GET", "/devices/" + "a" * 65, 400, "api.invalid"),
    "traversal-revoke": Case(
        "POST", "/devices/..%5Cetc/revoke", 400, "api.invalid", b"{}"
    ),
    "traversal-release": Case("GET", "/releases/sim-v1/..%2F..%2Froot", 404, "api.not_found"),
    "traversal-token": Case(
        "DELETE", "/tokens/%2E%2E", 404, "token.not_found", refused_event=True
    ),
    "unknown-token": Case(
        "DELETE", "/tokens/000000000000", 404, "token.not_found", refused_event=True
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def device(api: ApiKit, fleet: object) -> str:
    return str(fleet.enrolled[0])  # type: ignore[attr-defined]


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_input_is_a_problem_and_writes_nothing(api: ApiKit, device: str, case: Case) -> None:
    api.token("admin")  # its operator and token exist before counting
    before = row_counts(api.server)
    last = api.last_event_id()
    with api.client("admin") as client:
        response = client.request(
            case.method, api.url + case.path.format(device=device), content=case.content,
            headers=case.headers,
        )  # fmt: skip
    body = assert_problem(response, case.status, case.code)
    assert len(body["detail"]) < 600, body
    after = row_counts(api.server)
    with api.server.runtime.uow.begin(read_only=True) as tx:
        events = tx.events.list(after_id=last, limit=10)
    if case.refused_event:
        (refused,) = events
        assert refused.type == "operator.refused" and refused.details["code"] == case.code
        before["security_events"] += 1
    else:
        assert events == []
    assert after == before


def test_an_oversized_body_is_413_before_the_api_and_writes_nothing(api: ApiKit) -> None:
    limit = api.server.runtime.settings.api.max_body_bytes
    before = row_counts(api.server)
    content = b'{"name": "' + b"x" * limit + b'"}'
    with api.client("admin") as client:
        response = client.post("/tokens", content=content, headers=JSON)
    assert response.status_code == 413, response.text
    assert row_counts(api.server) == before
    with api.client("admin") as client:  # just under the bound: the API itself refuses it
        near = client.post("/tokens", content=content[: limit - 2] + b'"}', headers=JSON)
    assert_problem(near, 400, "api.invalid")
    assert near.headers["content-type"].startswith(PROBLEM)
    assert row_counts(api.server) == before
