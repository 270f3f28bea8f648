"""CoAP over one DTLS session for the simulated device: its own requests, the server's requests.

:meth:`CoapLink.exchange` sends a CON request and waits for its response (piggybacked or
separate), retransmitting with the RFC 7252 §4.2 back-off; requests from the server that arrive
meanwhile are answered through the ``on_request`` callback (the pure handler).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable

from trustfleet.errors import Unavailable
from trustfleet.lwm2m.coap import (
    CoapFormatError,
    Code,
    Message,
    MessageType,
    decode,
    empty_ack,
    encode,
)
from trustfleet.lwm2m.dtls_client import DtlsClient

__all__ = ["CoapLink"]

logger = logging.getLogger(__name__)

RECENT_REQUESTS = 32
"""Responses kept to answer retransmitted server requests (duplicate detection)."""


class CoapLink:
    """CoAP client and server roles over one :class:`DtlsClient`.

    Args:
        client: A connected DTLS client.
        on_request: Answers one request from the server (pure).
        ack_timeout_s: RFC 7252 ACK_TIMEOUT.
        max_retransmit: RFC 7252 MAX_RETRANSMIT.
    """

    def __init__(
        self,
        client: DtlsClient,
        *,
        on_request: Callable[[Message], Message],
        ack_timeout_s: float = 2.0,
        max_retransmit: int = 4,
    ) -> None:
        self._client = client
        self._on_request = on_request
        self._ack_timeout_s = ack_timeout_s
        self._max_retransmit = max_retransmit
        self._message_id = secrets.randbelow(0x10000)
        self._answered: dict[int, bytes] = {}

    def next_id(self) -> int:
        """A fresh message id."""
        self._message_id = (self._message_id + 1) & 0xFFFF
        return self._message_id

    @staticmethod
    def new_token() -> bytes:
        """A fresh 4-byte token."""
        return secrets.token_bytes(4)

    async def send(self, message: Message) -> None:
        """Send one message without waiting (NON notifications, ACKs)."""
        await self._client.send(encode(message))

    async def exchange(self, request: Message) -> Message:
        """Send a CON request and return its response.

        Raises:
            Unavailable: No response after the retransmissions, or the session closed.
        """
        data = encode(request)
        timeout_s = self._ack_timeout_s
        for _ in range(self._max_retransmit + 1):
            await self._client.send(data)
            response = await self._wait_response(request, timeout_s=timeout_s)
            if response is not None:
                return response
            timeout_s *= 2
        raise Unavailable(
            f"no CoAP response to {Code(request.code).name} /{'/'.join(request.uri_path())}",
            code="lwm2m.device.no_response",
        )

    async def _wait_response(self, request: Message, *, timeout_s: float) -> Message | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while (left_s := deadline - loop.time()) > 0:
            message = await self.receive(timeout_s=left_s)
            if message is None:
                return None
            if message.is_request:
                continue
            if message.type == MessageType.ACK and message.message_id == request.message_id:
                if message.code == Code.EMPTY:
                    deadline = loop.time() + 4 * timeout_s  # a separate response follows
                    continue
                return message
            if message.token == request.token:
                if message.type == MessageType.CON:
                    await self.send(empty_ack(message))
                return message
        return None

    async def receive(self, *, timeout_s: float) -> Message | None:
        """Wait for one message (None on timeout); a server request is answered, then returned."""
        while True:
            try:
                data = await self._client.recv(timeout_s=timeout_s)
            except TimeoutError:
                return None
            try:
                message = decode(data)
            except CoapFormatError:
                logger.debug("dropped a malformed CoAP message")
                continue
            if message.is_request:
                await self._answer(message)
            return message

    async def _answer(self, message: Message) -> None:
        cached = self._answered.get(message.message_id)
        if cached is None:
            cached = encode(self._on_request(message))
            if len(self._answered) >= RECENT_REQUESTS:
                self._answered.pop(next(iter(self._answered)))
            self._answered[message.message_id] = cached
        await self._client.send(cached)
