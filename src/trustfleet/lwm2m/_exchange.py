"""CoAP message layer of the LwM2M server (RFC 7252 §4, §5.3; RFC 7641 §3; RFC 7959 Block1).

Message ids and tokens for the server's own requests, CON retransmission (ACK_TIMEOUT with the
random factor 1.5, doubling, MAX_RETRANSMIT), duplicate detection per (peer, message id) for
EXCHANGE_LIFETIME answering with the cached response, piggybacked responses, RST for responses
nobody waits for, long-lived tokens for observations, and Block1 reassembly. Transport-agnostic:
``send(address, bytes)`` is injected (the DTLS server in production, a list in unit tests), so
is the clock.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

from trustfleet.errors import InvalidInput, Unavailable
from trustfleet.lwm2m.coap import (
    CoapFormatError,
    Code,
    Message,
    MessageType,
    decode,
    empty_ack,
    encode,
    reset,
)

__all__ = ["Address", "BlockAssembler", "Exchange", "ExchangeConfig", "ExchangeStats"]

logger = logging.getLogger(__name__)

Address = tuple[str, int]
_ACK_RANDOM_FACTOR: Final = 1.5
_MAX_DEDUP_ENTRIES: Final = 65_536
"""At most one entry per message id per peer is possible; this bounds the whole cache."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ExchangeConfig:
    """The ``[lwm2m]`` bounds the message layer uses."""

    ack_timeout_s: float
    max_retransmit: int
    exchange_lifetime_s: float
    max_payload_bytes: int
    max_observations: int = 65_536


@dataclass(slots=True)
class ExchangeStats:
    """Counters (the server's stats)."""

    malformed: int = 0
    duplicates: int = 0
    retransmissions: int = 0
    timeouts: int = 0
    resets_sent: int = 0
    notifications: int = 0


@dataclass(slots=True)
class _Pending:
    address: Address
    message_id: int
    future: asyncio.Future[Message]
    acked: asyncio.Event = field(default_factory=asyncio.Event)


Handler = Callable[[Address, Message], Awaitable[Message | None]]
Notify = Callable[[Address, Message], None]


class Exchange:
    """The message layer.

    Args:
        config: Bounds and timers.
        send: Sends one datagram's bytes to a peer (False: no session; counted as lost).
        handler: Answers a request (returns the response, or None to send nothing).
        clock: Monotonic seconds (duplicate detection).
        rng: Randomness for the retransmission factor (tests seed it).
    """

    def __init__(
        self,
        config: ExchangeConfig,
        *,
        send: Callable[[Address, bytes], bool],
        handler: Handler,
        clock: Callable[[], float],
        rng: random.Random | None = None,
    ) -> None:
        self._config = config
        self._send = send
        self._handler = handler
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311  # timing jitter, not a secret
        self._next_mid = self._rng.randrange(0x10000)
        self._pending: dict[tuple[Address, bytes], _Pending] = {}
        self._observations: dict[tuple[Address, bytes], Notify] = {}
        self._seen: OrderedDict[tuple[Address, int], tuple[float, bytes | None]] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats = ExchangeStats()

    # -- outgoing ---------------------------------------------------------------------------
    def message_id(self) -> int:
        """The next message id (16 bits, wrapping)."""
        self._next_mid = (self._next_mid + 1) & 0xFFFF
        return self._next_mid

    async def request(
        self, address: Address, message: Message, *, observe: Notify | None = None
    ) -> Message:
        """Send a request (its message id and token are assigned here) and await its response.

        A CON request is retransmitted until ACKed; after an empty ACK the separate response is
        awaited for EXCHANGE_LIFETIME. With ``observe`` the token stays registered after the
        response and every later notification on it goes to ``observe``.

        Raises:
            Unavailable: No answer (code ``lwm2m.coap.timeout``), a RST, or no session
                (code ``lwm2m.coap.unreachable``).
        """
        token = secrets.token_bytes(8)
        msg = Message(
            type=message.type,
            code=message.code,
            message_id=self.message_id(),
            token=token,
            options=message.options,
            payload=message.payload,
        )
        key = (address, token)
        pending = _Pending(address, msg.message_id, asyncio.get_running_loop().create_future())
        self._pending[key] = pending
        try:
            response = await self._transmit(pending, encode(msg), confirmable=msg.type == 0)
        finally:
            self._pending.pop(key, None)
        if observe is not None and response.observe() is not None:
            if len(self._observations) >= self._config.max_observations:
                raise Unavailable("Too many observations.", code="lwm2m.coap.observations")
            self._observations[key] = observe
        return response

    async def _transmit(self, pending: _Pending, data: bytes, *, confirmable: bool) -> Message:
        timeout = self._config.ack_timeout_s * self._rng.uniform(1.0, _ACK_RANDOM_FACTOR)
        attempts = self._config.max_retransmit + 1 if confirmable else 1
        for attempt in range(attempts):
            if not self._send(pending.address, data):
                raise Unavailable("The device has no session.", code="lwm2m.coap.unreachable")
            if attempt:
                self.stats.retransmissions += 1
            acked: asyncio.Future[object] = asyncio.ensure_future(pending.acked.wait())
            answer: asyncio.Future[object] = pending.future  # type: ignore[assignment]  # only waited on
            try:
                done, _ = await asyncio.wait(
                    {answer, acked}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                acked.cancel()
            if pending.future.done():
                return pending.future.result()
            if done:
                break
            timeout *= 2
        else:
            if confirmable or not pending.acked.is_set():
                self.stats.timeouts += 1
                raise Unavailable("The device did not answer.", code="lwm2m.coap.timeout")
        try:
            return await asyncio.wait_for(pending.future, self._config.exchange_lifetime_s)
        except TimeoutError:
            self.stats.timeouts += 1
            raise Unavailable("The device did not answer.", code="lwm2m.coap.timeout") from None

    def cancel_observations(self, address: Address) -> int:
        """Forget every observation of a peer (its session closed). Returns how many."""
        keys = [key for key in self._observations if key[0] == address]
        for key in keys:
            del self._observations[key]
        return len(keys)

    # -- incoming ---------------------------------------------------------------------------
    def receive(self, address: Address, data: bytes) -> None:
        """One datagram from a peer: decoded, matched, dispatched. Malformed ones are dropped."""
        try:
            message = decode(data)
        except CoapFormatError:
            self.stats.malformed += 1
            return
        if message.code == Code.EMPTY:
            self._on_empty(address, message)
        elif message.is_request:
            self._on_request(address, message)
        else:
            self._on_response(address, message)

    def _on_empty(self, address: Address, message: Message) -> None:
        if message.type == MessageType.CON:  # CoAP ping
            self._raw_send(address, reset(message))
            return
        for pending in self._pending.values():
            if pending.address == address and pending.message_id == message.message_id:
                if message.type == MessageType.RST and not pending.future.done():
                    pending.future.set_exception(
                        Unavailable("The device reset the request.", code="lwm2m.coap.reset")
                    )
                pending.acked.set()
                return
        if message.type == MessageType.RST:  # a refused notification: stop observing it
            for key in [k for k in self._observations if k[0] == address]:
                logger.debug("observation on %s reset", address)
                del self._observations[key]

    def _on_response(self, address: Address, message: Message) -> None:
        key = (address, message.token)
        if message.type == MessageType.CON:
            self._raw_send(address, empty_ack(message))
            if self._duplicate(address, message.message_id, remember=b""):
                return
        pending = self._pending.get(key)
        if pending is not None:
            if not pending.future.done():
                pending.future.set_result(message)
            return
        notify = self._observations.get(key)
        if notify is not None and message.observe() is not None:
            self.stats.notifications += 1
            notify(address, message)
            return
        if message.type != MessageType.ACK:
            self.stats.resets_sent += 1
            self._raw_send(address, reset(message))

    def _duplicate(self, address: Address, message_id: int, *, remember: bytes | None) -> bool:
        """Whether (peer, mid) was seen within EXCHANGE_LIFETIME (resending its cached answer);
        if not, remember it with ``remember`` (None: the answer is still being made)."""
        now = self._clock()
        while self._seen:
            oldest_key, (seen_at, _) = next(iter(self._seen.items()))
            if now - seen_at <= self._config.exchange_lifetime_s:
                break
            del self._seen[oldest_key]
        key = (address, message_id)
        entry = self._seen.get(key)
        if entry is not None:
            self.stats.duplicates += 1
            if entry[1]:
                self._send(address, entry[1])
            return True
        if len(self._seen) >= _MAX_DEDUP_ENTRIES:
            self._seen.popitem(last=False)
        self._seen[key] = (now, remember)
        return False

    def _on_request(self, address: Address, message: Message) -> None:
        if message.type in (MessageType.ACK, MessageType.RST):
            self.stats.malformed += 1
            return
        if self._duplicate(address, message.message_id, remember=None):
            return
        task = asyncio.get_running_loop().create_task(self._answer(address, message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, address: Address, message: Message) -> None:
        response = await self._handler(address, message)
        key = (address, message.message_id)
        if response is None:
            # Nothing was sent (e.g. the request came on a session that closed meanwhile): a
            # retransmission, typically over the peer's next session, is a new request, not a
            # duplicate to swallow for EXCHANGE_LIFETIME.
            if key in self._seen and self._seen[key][1] is None:
                del self._seen[key]
            return
        if response.type in (MessageType.NON, MessageType.CON):
            response = Message(
                type=response.type,
                code=response.code,
                message_id=self.message_id(),
                token=response.token,
                options=response.options,
                payload=response.payload,
            )
        data = encode(response)
        if key in self._seen:
            self._seen[key] = (self._seen[key][0], data)
        self._send(address, data)

    def forget_peer(self, address: Address) -> int:
        """Forget the duplicate-detection entries of ``address`` (its DTLS session ended).

        Message ids are matched within one DTLS session (RFC 7252 §9.1.1): a client that
        re-handshakes from the same address may resend a request with the same message id,
        which is new on the new session and must not get the old session's cached answer (or
        none at all). Returns how many entries were dropped.
        """
        keys = [key for key in self._seen if key[0] == address]
        for key in keys:
            del self._seen[key]
        return len(keys)

    def _raw_send(self, address: Address, message: Message) -> None:
        self._send(address, encode(message))

    async def close(self) -> None:
        """Cancel the answers in progress and fail the pending requests."""
        for task in list(self._tasks):
            task.cancel()
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(
                    Unavailable("The server is stopping.", code="lwm2m.coap.closed")
                )
        self._observations.clear()


@dataclass(slots=True)
class _Assembly:
    data: bytearray
    size: int
    started_s: float


class BlockAssembler:
    """Block1 reassembly of request payloads (RFC 7959 §2.5), bounded in bytes and entries.

    Args:
        max_payload_bytes: The largest assembled payload.
        max_entries: Assemblies in progress at once (the oldest is dropped).
        lifetime_s: An assembly not continued within this is dropped.
    """

    def __init__(self, *, max_payload_bytes: int, max_entries: int, lifetime_s: float) -> None:
        self._max_bytes = max_payload_bytes
        self._max_entries = max_entries
        self._lifetime_s = lifetime_s
        self._open: OrderedDict[tuple[Address, tuple[str, ...]], _Assembly] = OrderedDict()

    def add(
        self,
        address: Address,
        key: tuple[str, ...],
        *,
        num: int,
        size: int,
        more: bool,
        payload: bytes,
        now: float,
    ) -> bytes | None:
        """Add one block; the whole payload when the last block came, else None.

        Raises:
            InvalidInput: Too large (code ``lwm2m.coap.too_large``; 4.13) or a block out of order
                (code ``lwm2m.coap.incomplete``; 4.08).
        """
        for stale in [k for k, a in self._open.items() if now - a.started_s > self._lifetime_s]:
            del self._open[stale]
        name = (address, key)
        entry = self._open.get(name)
        if num == 0:
            entry = _Assembly(bytearray(), size, now)
            self._open[name] = entry
            while len(self._open) > self._max_entries:
                self._open.popitem(last=False)
        if entry is None or num * size != len(entry.data) or (more and len(payload) != size):
            self._open.pop(name, None)
            raise InvalidInput("A block is out of order.", code="lwm2m.coap.incomplete")
        if len(entry.data) + len(payload) > self._max_bytes:
            self._open.pop(name, None)
            raise InvalidInput("The payload is too large.", code="lwm2m.coap.too_large")
        entry.data += payload
        if more:
            return None
        del self._open[name]
        return bytes(entry.data)
