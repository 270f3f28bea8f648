"""The ASGI ``receive`` and ``send`` of one HTTP/1.1 request on an h11 connection."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import h11

__all__ = ["PeerGone", "Receive", "Send"]

Message = MutableMapping[str, Any]


class Receive:
    """ASGI ``receive``: the whole (bounded) body once, then ``http.disconnect``."""

    def __init__(self, body: bytes) -> None:
        self._body: bytes | None = body

    async def __call__(self) -> Message:
        if self._body is not None:
            body, self._body = self._body, None
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}


class Send:
    """ASGI ``send``: the response head goes out with the first body chunk, each chunk waits
    for the client to take the previous ones, and a HEAD response keeps its headers but sends
    no body (RFC 9110 §9.3.2)."""

    def __init__(
        self,
        http: h11.Connection,
        write: Callable[[bytes], None],
        drain: Callable[[], Awaitable[None]],
        *,
        head: bool,
    ) -> None:
        self._http = http
        self._write = write
        self._drain = drain
        self._head = head
        self._pending: list[bytes] = []
        self._ended = False

    async def __call__(self, message: Message) -> None:
        http = self._http
        if message["type"] == "http.response.start":
            headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", [])]
            self._pending.append(
                http.send(h11.Response(status_code=message["status"], headers=headers)) or b""
            )
        elif message["type"] == "http.response.body" and not self._ended:
            data = message.get("body", b"")
            if data and not self._head:
                self._pending.append(http.send(h11.Data(data=data)) or b"")
            if not message.get("more_body", False):
                self._ended = True
                self._pending.append(http.send(h11.EndOfMessage()) or b"")
            self._write(b"".join(self._pending))
            self._pending.clear()
            await self._drain()


class PeerGone(ConnectionError):
    """The client closed or stalled (past the idle timeout) while a response was being sent."""
