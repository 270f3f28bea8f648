"""Errors of the management API become RFC 9457 problems at one boundary (in process)."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from trustfleet.errors import Conflict, Unavailable
from trustfleet.server.api._problems import PROBLEM_MEDIA_TYPE, install_problem_handlers


@pytest.fixture
def client() -> TestClient:
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/conflict")
    async def conflict() -> None:
        raise Conflict("it exists", hint="use another name", code="thing.exists")

    @app.get("/down")
    async def down() -> None:
        raise Unavailable("the broker is away")

    @app.get("/bug")
    async def bug() -> None:
        raise RuntimeError("secret internals")

    @app.get("/typed")
    async def typed(n: int) -> int:
        return n

    return TestClient(app, raise_server_exceptions=False)


def test_a_trustfleet_error_keeps_its_status_code_and_hint(client: TestClient) -> None:
    response = client.get("/conflict")
    assert response.status_code == 409
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert response.json() == {
        "type": "https://trustfleet.dev/problems/thing.exists", "title": "Conflict",
        "status": 409, "detail": "it exists", "code": "thing.exists", "hint": "use another name",
    }  # fmt: skip


def test_without_a_code_the_category_is_the_code(client: TestClient) -> None:
    body = client.get("/down").json()
    assert body["status"] == 503 and body["code"] == "unavailable" and "hint" not in body


def test_a_bug_is_a_bare_500_that_reveals_nothing(client: TestClient) -> None:
    response = client.get("/bug")
    assert response.status_code == 500
    assert response.json()["code"] == "api.internal"
    assert "secret" not in response.text


def test_validation_names_the_field_and_is_400(client: TestClient) -> None:
    body = client.get("/typed", params={"n": "x"}).json()
    assert body["status"] == 400 and body["code"] == "api.invalid" and "query.n" in body["detail"]
    assert client.get("/nowhere").json()["code"] == "api.not_found"
    assert client.post("/typed").json()["code"] == "api.method_not_allowed"
