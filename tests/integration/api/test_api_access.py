"""The management API's front door on a real server: credentials, roles, CSRF, problem details,
paging, the OpenAPI document, /metrics, and curl as an independent client."""

from __future__ import annotations

import json

import pytest
from apikit import API, PROBLEM, ApiKit, assert_problem

from support.server import curl
from trustfleet import rbac

pytestmark = pytest.mark.integration


def test_me_names_the_principal_and_its_permissions(api: ApiKit) -> None:
    response = api.get("/me", role="fleet-operator")
    assert response.headers["x-content-type-options"] == "nosniff"  # the operator plane's headers
    assert "no-store" in response.headers["cache-control"]
    body = response.json()
    assert body["login"] == "op-fleet-operator" and body["role"] == "fleet-operator"
    assert body["via"] == "token" and body["token_id"]
    assert body["actor"] == f"operator:op-fleet-operator token:{body['token_id']}"
    assert body["permissions"] == sorted(rbac.permissions_of("fleet-operator"))


def test_missing_bad_and_revoked_credentials_are_401(api: ApiKit) -> None:
    assert_problem(api.get("/devices", role=None), 401, "auth.unauthenticated")
    for header in ("Bearer tf_nope_nope", "Basic YWxpY2U6cw==", "Bearer " + "x" * 600):
        with api.client(None, authorization=header) as client:
            response = client.get("/devices")
        assert_problem(response, 401, "auth.unauthenticated")
        assert response.headers["www-authenticate"] == "Bearer"
    secret = api.token("auditor", fresh=True)
    token_id = secret.split("_")[1]
    assert api.post(f"/tokens/{token_id}", method="DELETE").status_code == 200
    with api.client(None, authorization=f"Bearer {secret}") as client:
        assert_problem(client.get("/me"), 401, "auth.unauthenticated")


def test_a_role_without_the_permission_is_403_and_the_refusal_is_recorded(api: ApiKit) -> None:
    assert_problem(api.get("/users", role="factory"), 403, "auth.forbidden")
    before = api.last_event_id()
    body = {"version": "9.9.9", "waves": [100], "max_failure_rate": 0.1}
    assert_problem(api.post("/campaigns", body, role="auditor"), 403, "auth.forbidden")
    (refused,) = api.events(after_id=before, type_="operator.refused")
    assert refused.outcome == "refused" and refused.details["code"] == "auth.forbidden"
    assert refused.actor.startswith("operator:op-auditor token:")
    assert refused.origin.startswith(f"https POST {API}/campaigns from 127.0.0.1:")
    assert not api.events(after_id=before, type_="campaign.created")


def test_a_metrics_token_reads_metrics_only(api: ApiKit) -> None:
    assert_problem(api.get("/devices", role="metrics"), 403, "auth.forbidden")
    assert_problem(api.get("/me", role="metrics"), 403, "auth.forbidden")


def test_a_session_cookie_needs_its_csrf_token_to_change_anything(api: ApiKit) -> None:
    with api.client(None, cookie="__Host-tf_session=not-a-session") as client:
        assert_problem(client.get("/me"), 401, "auth.session")
        assert_problem(client.post("/tokens", json={"name": "x"}), 401, "auth.session")
    secret, csrf = api.session("auditor")
    with api.client(None, cookie=f"__Host-tf_session={secret}") as client:
        assert client.get("/me").json()["via"] == "session"
        before = api.last_event_id()
        denied = client.post("/tokens", json={"name": "ci"})
        assert_problem(denied, 403, "auth.csrf")
        wrong = client.post("/tokens", json={"name": "ci"}, headers={"x-csrf-token": "x" + csrf})
        assert_problem(wrong, 403, "auth.csrf")
        assert not api.events(after_id=before, type_="token.created")
        refused = api.events(after_id=before, type_="operator.refused")
        assert [e.details["code"] for e in refused] == ["auth.csrf", "auth.csrf"]
        assert refused[0].actor == "operator:op-auditor"
        made = client.post("/tokens", json={"name": "ci"}, headers={"x-csrf-token": csrf})
    assert made.status_code == 201, made.text
    assert made.json()["secret"].startswith("tf_") and made.json()["token"]["role"] == "auditor"


def test_validation_unknown_parameters_and_routes_are_problems(api: ApiKit) -> None:
    body = assert_problem(api.get("/devices", limit=0), 400, "api.invalid")
    assert "limit" in body["detail"]
    assert_problem(api.get("/devices", limit=100_000), 400, "api.invalid")
    assert_problem(api.get("/devices", online="maybe"), 400, "api.invalid")
    assert_problem(api.get("/devices", sort="color"), 400, "api.invalid")
    body = assert_problem(api.get("/devices", colour="red"), 400, "api.unknown_parameter")
    assert "colour" in body["detail"]
    assert_problem(api.get("/devices", cursor="abc"), 400, "api.invalid")
    assert_problem(api.get("/no-such-thing"), 404, "api.not_found")
    assert_problem(api.post("/devices"), 405, "api.method_not_allowed")
    assert api.post("/devices", method="DELETE").headers["allow"] == "GET"
    assert api.post("/tokens", method="PUT").headers["allow"] == "GET, POST"
    with api.client() as client:  # paths the mount cannot route are problems too
        assert_problem(client.get(api.server.base_url + API), 404, "api.not_found")
        assert_problem(client.get(f"{api.url}/devices/a%0Ab"), 404, "api.not_found")
        plain = client.get(api.server.base_url + "/nowhere")  # outside the API: as before
    assert plain.status_code == 404 and plain.headers["content-type"].startswith("text/plain")
    assert_problem(api.get("/devices", cursor="1" * 13), 400, "api.invalid")
    for when in ("0.5", "1700000000", "2026-12-02T18:00:00"):  # RFC 3339 with a zone only
        assert_problem(api.get("/events", since=when), 400, "api.invalid")
    assert api.get("/events", since="2026-12-02T18:00:00Z", limit=1).status_code == 200
    with api.client() as client:
        malformed = client.post(
            "/campaigns", content=b"{nope", headers={"content-type": "application/json"}
        )
    assert_problem(malformed, 400, "api.invalid")
    extra = {"version": "1.0.0", "waves": [100], "max_failure_rate": 0.1, "surprise": 1}
    assert "surprise" in assert_problem(api.post("/campaigns", extra), 400, "api.invalid")["detail"]


def test_pages_walk_every_device_once(api: ApiKit, fleet: object) -> None:
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(20):
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = api.get("/devices", **params).json()
        assert len(page["items"]) <= 2
        seen += [d["id"] for d in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(seen) and len(seen) == len(set(seen)) >= 5
    backwards = [d["id"] for d in api.get("/devices", sort="-id", limit=500).json()["items"]]
    assert backwards == sorted(seen, reverse=True)


def test_openapi_is_3_1_and_every_operation_names_a_permission(api: ApiKit) -> None:
    doc = api.get("/openapi.json", role=None).json()
    assert doc["openapi"].startswith("3.1")
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            permission = operation.get("x-permission")
            assert permission in rbac.PERMISSIONS, (method, path)
            assert "422" not in operation["responses"]
            assert PROBLEM in operation["responses"]["400"]["content"]
    assert api.get("/docs", role=None).status_code == 404  # no docs UI (it would load a CDN)


def test_metrics_needs_a_metrics_token(api: ApiKit, fleet: object) -> None:
    with api.client(None) as client:
        url = api.server.base_url + "/metrics"
        assert_problem(client.get(url), 401, "auth.unauthenticated")
        denied = client.get(url, headers={"authorization": f"Bearer {api.token('fleet-operator')}"})
        assert_problem(denied, 403, "auth.forbidden")
        api.get("/devices")  # at least one API request timed by this worker
        api.get("/no-such-route")
        text = client.get(url, headers={"authorization": f"Bearer {api.token('metrics')}"}).text
    assert 'trustfleet_devices{state="enrolled"} 3.0' in text
    assert 'trustfleet_devices{state="manufactured"} 2.0' in text
    assert "trustfleet_enrollments_total 3.0" in text
    assert "trustfleet_devices_quarantined " in text and "trustfleet_audit_log_size " in text
    assert 'trustfleet_attestation_results_24h{result="failed"}' in text
    assert (
        'route="/api/v1/devices"' in text
        and "trustfleet_http_request_duration_seconds_count" in text
    )


def test_curl_lists_devices_with_a_token(api: ApiKit, fleet: object) -> None:
    result = curl(
        "--cacert", api.server.ca_bundle, "-H", f"Authorization: Bearer {api.token('auditor')}",
        f"{api.url}/devices?limit=1&sort=-id",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    page = json.loads(result.stdout)
    assert len(page["items"]) == 1 and page["next_cursor"] == "1"
