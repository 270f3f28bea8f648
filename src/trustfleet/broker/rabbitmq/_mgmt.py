"""RabbitMQ's management HTTP API, the few calls TrustFleet needs, with bounds and one error type.

Every call goes to the first node that answers (the API is cluster-wide: users, permissions and
connections of every node). Responses are read up to ``max_response_bytes``; a node that does
not answer within ``timeout_s`` is skipped. Errors come out as :class:`Unavailable` (no node
answered, or a 5xx) or :class:`Conflict` (a 4xx: the request was refused).
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, urlsplit

from trustfleet.errors import Conflict, Unavailable

__all__ = ["ManagementApi", "ManagementEndpoint"]

logger = logging.getLogger(__name__)

_JSON: Final = "application/json"


@dataclass(frozen=True)
class ManagementEndpoint:
    """Where and as whom to reach the management API.

    Attributes:
        urls: One base URL per node (``http://host:15672`` or ``https://…``).
        username: A user with the ``administrator`` tag.
        password: Its password.
        cafile: CA bundle for ``https`` URLs (None: the system's).
        timeout_s: Bound on one request to one node.
        max_response_bytes: Bound on one response.
    """

    urls: Sequence[str]
    username: str
    password: str
    cafile: str | None = None
    timeout_s: float = 5.0
    max_response_bytes: int = 16 * 1024 * 1024


def _q(name: str) -> str:
    return quote(name, safe="")


class ManagementApi:
    """The management API of one RabbitMQ cluster."""

    def __init__(self, endpoint: ManagementEndpoint) -> None:
        if not endpoint.urls:
            raise ValueError("at least one management URL")
        self.endpoint = endpoint
        token = f"{endpoint.username}:{endpoint.password}".encode()
        self._auth = "Basic " + base64.b64encode(token).decode()

    # -- calls --------------------------------------------------------------------------

    def nodes(self) -> list[dict[str, Any]]:
        """Every node of the cluster with ``name`` and ``running``."""
        found = self._call("GET", "/api/nodes?columns=name,running")
        return [n for n in found if isinstance(n, dict)] if isinstance(found, list) else []

    def users(self, *, tag: str) -> set[str]:
        """The users carrying ``tag``."""
        found = self._call("GET", "/api/users?columns=name,tags")
        names: set[str] = set()
        for user in found if isinstance(found, list) else []:
            tags = user.get("tags", []) if isinstance(user, dict) else []
            tags = tags.split(",") if isinstance(tags, str) else tags
            if tag in tags:
                names.add(str(user["name"]))
        return names

    def put_user(self, name: str, *, tags: Sequence[str]) -> None:
        """Create (or update) a user that has no password: it logs in by certificate only."""
        self._call("PUT", f"/api/users/{_q(name)}", {"password_hash": "", "tags": ",".join(tags)})

    def delete_user(self, name: str) -> None:
        """Delete a user (absent: nothing to do)."""
        self._call("DELETE", f"/api/users/{_q(name)}", missing_ok=True)

    def set_permissions(
        self, vhost: str, user: str, *, configure: str, write: str, read: str
    ) -> None:
        """A user's permissions on the resources of ``vhost``."""
        body = {"configure": configure, "write": write, "read": read}
        self._call("PUT", f"/api/permissions/{_q(vhost)}/{_q(user)}", body)

    def set_topic_permissions(
        self, vhost: str, user: str, *, exchange: str, write: str, read: str
    ) -> None:
        """A user's routing keys on a topic exchange of ``vhost``."""
        body = {"exchange": exchange, "write": write, "read": read}
        self._call("PUT", f"/api/topic-permissions/{_q(vhost)}/{_q(user)}", body)

    def put_policy(
        self, vhost: str, name: str, *, pattern: str, apply_to: str, definition: dict[str, Any]
    ) -> None:
        """Create or replace a policy of ``vhost``."""
        body = {"pattern": pattern, "apply-to": apply_to, "definition": definition, "priority": 0}
        self._call("PUT", f"/api/policies/{_q(vhost)}/{_q(name)}", body)

    def topic_permissions(self, vhost: str) -> list[dict[str, Any]]:
        """Every user's topic permissions in ``vhost`` (``user``, ``exchange``, ``write``, …)."""
        found = self._call("GET", f"/api/vhosts/{_q(vhost)}/topic-permissions")
        return [p for p in found if isinstance(p, dict)] if isinstance(found, list) else []

    def connections_of(self, user: str) -> list[str]:
        """The names of the user's connections, on every node.

        The API lists an MQTT connection once its first statistics arrive (seconds after it
        was made; ``/api/connections/username/`` does not list MQTT connections on 3.10).
        """
        found = self._call("GET", "/api/connections?columns=name,user")
        items = found if isinstance(found, list) else []
        return [
            str(c["name"])
            for c in items
            if isinstance(c, dict) and c.get("user") == user and "name" in c
        ]

    def close_connection(self, name: str, *, reason: str) -> None:
        """Close one connection, wherever it is (gone already: nothing to do)."""
        self._call(
            "DELETE", f"/api/connections/{_q(name)}", missing_ok=True,
            headers={"X-Reason": reason[:200]},
        )  # fmt: skip

    # -- transport ----------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        missing_ok: bool = False,
        headers: dict[str, str] | None = None,
    ) -> Any:
        last: Exception | None = None
        for url in self.endpoint.urls:
            try:
                status, data = self._request(url, method, path, body, headers or {})
            except (OSError, http.client.HTTPException) as exc:
                logger.info("management API %s: %s", url, exc)
                last = exc
                continue
            if status == 404 and missing_ok:
                return None
            if status >= 500:
                last = RuntimeError(f"{status} {data[:200]!r}")
                continue
            if status >= 400:
                what = f"{method} {path.split('?', maxsplit=1)[0]}"
                raise Conflict(
                    f"RabbitMQ refused {what}: {status} {_reason(data)}",
                    hint="check the management user's tags and the [rabbitmq] settings",
                    code="broker.rabbitmq.refused",
                )
            try:
                return json.loads(data) if data.strip() else None
            except ValueError as exc:
                last = exc
                continue
        raise Unavailable(
            f"no RabbitMQ management API answered ({last})",
            hint="check [rabbitmq] management_urls and that the nodes run",
            code="broker.rabbitmq.unavailable",
        )

    def _request(
        self, url: str, method: str, path: str, body: Any, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port
        timeout = self.endpoint.timeout_s
        conn: http.client.HTTPConnection
        if parts.scheme == "https":
            context = ssl.create_default_context(cafile=self.endpoint.cafile)
            conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        payload = json.dumps(body).encode() if body is not None else None
        try:
            conn.request(
                method,
                parts.path.rstrip("/") + path,
                body=payload,
                headers={"Authorization": self._auth, "Content-Type": _JSON, **headers},
            )
            response = conn.getresponse()
            limit = self.endpoint.max_response_bytes
            data = response.read(limit + 1)
            if len(data) > limit:
                raise http.client.HTTPException(f"response over {limit} bytes")
            return response.status, data
        finally:
            conn.close()


def _reason(data: bytes) -> str:
    try:
        doc = json.loads(data)
    except ValueError:
        return data[:200].decode(errors="replace")
    if isinstance(doc, dict):
        return str(doc.get("reason") or doc.get("error") or "")[:200]
    return ""
