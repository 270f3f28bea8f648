"""The management API of a real ``trustfleet server run``, and credentials for it.

:func:`api_server` serves a fresh home; :class:`ApiKit` makes operators and API tokens through
the services (as ``trustfleet user add`` and ``token create`` do) and HTTPS clients trusting
the home's CA bundle. One operator per role, made on first use.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from support.server import RunningServer, running_server
from trustfleet import rbac
from trustfleet.errors import NotFound
from trustfleet.services import api_tokens, auth, operators

__all__ = ["API", "PROBLEM", "ApiKit", "api_server", "assert_problem"]

API = "/api/v1"
PROBLEM = "application/problem+json"
TIMEOUT_S = 60


@dataclass
class ApiKit:
    """A running server, its operators (one per role) and their tokens."""

    server: RunningServer
    _tokens: dict[str, str] = field(default_factory=dict)
    passwords: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """The API's base URL."""
        return self.server.base_url + API

    def operator(self, role: str) -> str:
        """The login of an operator with ``role`` (a ``metrics`` token belongs to an admin)."""
        owner_role = "admin" if role in rbac.TOKEN_ONLY_ROLES else role
        login = f"op-{owner_role}"
        rt = self.server.runtime
        try:
            operators.get_operator(rt, login)
        except NotFound:
            self.passwords[login] = secrets.token_urlsafe(16)
            operators.add_operator(
                rt, login=login, role=owner_role, password=self.passwords[login],
                now=datetime.now(UTC),
            )  # fmt: skip
        return login

    def token(self, role: str, *, fresh: bool = False) -> str:
        """An API token of ``role`` (cached unless ``fresh``)."""
        if fresh or role not in self._tokens:
            _rec, secret = api_tokens.create_token(
                self.server.runtime, owner=self.operator(role), name=f"test {role}", role=role,
                ttl_s=3600, now=datetime.now(UTC),
            )  # fmt: skip
            if fresh:
                return secret
            self._tokens[role] = secret
        return self._tokens[role]

    def session(self, role: str) -> tuple[str, str]:
        """A console session of ``role`` after its password: ``(cookie value, CSRF token)``."""
        login = self.operator(role)
        step = auth.login_password(
            self.server.runtime, login=login, password=self.passwords[login],
            origin="test", now=datetime.now(UTC),
        )  # fmt: skip
        assert step.view.stage == "full", step.view.stage
        return step.session_secret, step.view.csrf_token

    def client(self, role: str | None = "admin", **headers: str) -> httpx.Client:
        """An HTTPS client of the API, with a token of ``role`` (none when None)."""
        sent = dict(headers)
        if role is not None:
            sent["authorization"] = f"Bearer {self.token(role)}"
        return httpx.Client(
            base_url=self.url, verify=self.server.ssl_context(), headers=sent, timeout=TIMEOUT_S
        )

    def get(self, path: str, *, role: str | None = "admin", **params: Any) -> httpx.Response:
        """``GET path`` as ``role``."""
        with self.client(role) as client:
            return client.get(path, params=params)

    def post(
        self, path: str, body: Any = None, *, role: str | None = "admin", method: str = "POST"
    ) -> httpx.Response:
        """``POST path`` (or ``method``) with a JSON body as ``role``."""
        with self.client(role) as client:
            return client.request(method, path, json=body)

    def events(self, *, after_id: int, type_: str) -> list[Any]:
        """Security events of one type after an id (from the store)."""
        with self.server.runtime.uow.begin(read_only=True) as tx:
            return [e for e in tx.events.list(after_id=after_id, limit=1000) if e.type == type_]

    def last_event_id(self) -> int:
        """The newest security event's id."""
        return self.server.snapshot().last_event_id


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """``response`` is an RFC 9457 problem of ``status`` and ``code``; its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["code"] == code, body
    assert body["type"] == f"https://trustfleet.dev/problems/{code}"
    assert body["title"] and body["detail"]
    return body


@contextmanager
def api_server(base: Path) -> Iterator[ApiKit]:
    """A real server on a fresh home under ``base`` (attestation off: software devices)."""
    with running_server(base, settings={"attestation.enabled": "false"}) as server:
        yield ApiKit(server)
