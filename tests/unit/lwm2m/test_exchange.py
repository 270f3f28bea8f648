"""The CoAP message layer with a fake transport and an injected clock (no network)."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from support import aio
from trustfleet.errors import InvalidInput, Unavailable
from trustfleet.lwm2m._exchange import Address, BlockAssembler, Exchange, ExchangeConfig
from trustfleet.lwm2m.coap import (
    Code,
    Message,
    MessageType,
    Option,
    decode,
    encode,
    request,
    response_to,
)

PEER: Address = ("127.0.0.1", 40000)


class Wire:
    """The fake transport: what the exchange sent, and a settable clock."""

    def __init__(self) -> None:
        self.sent: list[tuple[Address, Message]] = []
        self.now_s = 0.0
        self.up = True

    def send(self, address: Address, data: bytes) -> bool:
        if self.up:
            self.sent.append((address, decode(data)))
        return self.up


def _exchange(wire: Wire, *, ack_timeout_s: float = 0.01, max_retransmit: int = 2) -> Exchange:
    calls: list[Message] = []

    async def handler(_address: Address, message: Message) -> Message | None:
        calls.append(message)
        mid = None if message.type == MessageType.CON else 0
        return response_to(message, Code.CHANGED, payload=b"%d" % len(calls), message_id=mid)

    config = ExchangeConfig(
        ack_timeout_s=ack_timeout_s, max_retransmit=max_retransmit,
        exchange_lifetime_s=10.0, max_payload_bytes=1024,
    )  # fmt: skip
    return Exchange(
        config, send=wire.send, handler=handler, clock=lambda: wire.now_s, rng=random.Random(1)
    )


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_duplicate_request_answered_from_cache() -> None:
    async def scenario() -> None:
        wire = Wire()
        exchange = _exchange(wire)
        data = encode(request(Code.POST, path="/rd/x", message_id=7, token=b"t"))
        exchange.receive(PEER, data)
        await _settle()
        exchange.receive(PEER, data)
        await _settle()
        assert [m.payload for _, m in wire.sent] == [b"1", b"1"]
        assert exchange.stats.duplicates == 1
        wire.now_s = 11.0  # past EXCHANGE_LIFETIME: a new exchange
        exchange.receive(PEER, data)
        await _settle()
        assert wire.sent[-1][1].payload == b"2"

    aio.run(scenario())


def test_rehandshake_register_not_swallowed_as_duplicate() -> None:
    """Regression (Wakaama after bootstrap): its Register went over the bootstrap session just
    as the server closed it, so nothing answered it; the retransmission with the same message
    id over the new DTLS session must be handled, not dropped as a duplicate for
    EXCHANGE_LIFETIME (the client then never reached STATE_READY)."""

    async def scenario() -> None:
        wire = Wire()
        session_open = False

        async def handler(_address: Address, message: Message) -> Message | None:
            if not session_open:
                return None  # the server's handler: no session with this address any more
            return response_to(message, Code.CREATED, message_id=None)

        exchange = Exchange(
            ExchangeConfig(
                ack_timeout_s=1.0, max_retransmit=2, exchange_lifetime_s=10.0,
                max_payload_bytes=1024,
            ),
            send=wire.send, handler=handler, clock=lambda: wire.now_s, rng=random.Random(1),
        )  # fmt: skip
        data = encode(request(Code.POST, path="/rd", message_id=42, token=b"r"))
        exchange.receive(PEER, data)
        await _settle()
        assert wire.sent == []
        session_open = True  # the client's new handshake, then its retransmission
        wire.now_s = 2.0
        exchange.receive(PEER, data)
        await _settle()
        assert [(m.code, m.message_id) for _, m in wire.sent] == [(Code.CREATED, 42)]
        assert exchange.stats.duplicates == 0

    aio.run(scenario())


def test_forget_peer_drops_cached_answers_of_the_ended_session() -> None:
    """A request answered on a session that then closed is new on the peer's next session
    (RFC 7252 §9.1.1: message ids are matched within one DTLS session)."""

    async def scenario() -> None:
        wire = Wire()
        exchange = _exchange(wire)
        other: Address = ("127.0.0.1", 40001)
        data = encode(request(Code.POST, path="/rd", message_id=9, token=b"r"))
        exchange.receive(PEER, data)
        exchange.receive(other, data)
        await _settle()
        assert exchange.forget_peer(PEER) == 1
        exchange.receive(PEER, data)
        exchange.receive(other, data)
        await _settle()
        assert [(a, m.payload) for a, m in wire.sent] == [
            (PEER, b"1"), (other, b"2"), (other, b"2"), (PEER, b"3"),
        ]  # fmt: skip  # the cached answer is resent at once, the new one from a task
        assert exchange.stats.duplicates == 1

    aio.run(scenario())


@pytest.mark.parametrize(
    "data",
    [b"", b"\x40", b"\x80\x01\x00\x01", b"\x48\x01\x00\x01abc", b"\x40\x01\x00\x01\xff"],
    ids=["empty", "short-header", "version-2", "token-too-short", "marker-no-payload"],
)
def test_malformed_dropped(data: bytes) -> None:
    async def scenario() -> None:
        wire = Wire()
        exchange = _exchange(wire)
        exchange.receive(PEER, data)
        await _settle()
        assert wire.sent == [] and exchange.stats.malformed == 1

    aio.run(scenario())


def test_request_retransmitted_then_times_out() -> None:
    async def scenario() -> None:
        wire = Wire()
        exchange = _exchange(wire, max_retransmit=2)
        with pytest.raises(Unavailable) as info:
            await exchange.request(PEER, request(Code.GET, path="/3/0", message_id=0))
        assert info.value.code == "lwm2m.coap.timeout"
        mids = {m.message_id for _, m in wire.sent}
        assert len(wire.sent) == 3 and len(mids) == 1
        assert exchange.stats.retransmissions == 2

    aio.run(scenario())


def test_piggybacked_and_separate_responses() -> None:
    async def scenario() -> None:
        wire = Wire()
        exchange = _exchange(wire, ack_timeout_s=5.0)
        task = asyncio.create_task(
            exchange.request(PEER, request(Code.GET, path="/3/0", message_id=0))
        )
        await _settle()
        sent = wire.sent[0][1]
        assert len(sent.token) == 8
        exchange.receive(PEER, encode(response_to(sent, Code.CONTENT, payload=b"x")))
        assert (await task).payload == b"x"
        # separate: empty ACK first, then a CON response that gets an empty ACK back
        task = asyncio.create_task(
            exchange.request(PEER, request(Code.GET, path="/3/0", message_id=0))
        )
        await _settle()
        sent = wire.sent[-1][1]
        exchange.receive(
            PEER, encode(Message(type=MessageType.ACK, code=0, message_id=sent.message_id))
        )
        separate = response_to(sent, Code.CONTENT, payload=b"y", message_id=999)
        exchange.receive(PEER, encode(separate))
        assert (await task).payload == b"y"
        assert wire.sent[-1][1].type == MessageType.ACK and wire.sent[-1][1].message_id == 999

    aio.run(scenario())


def test_unknown_response_reset_and_rst_fails_request() -> None:
    async def scenario() -> None:
        wire = Wire()
        exchange = _exchange(wire, ack_timeout_s=5.0)
        stray = Message(type=MessageType.CON, code=Code.CONTENT, message_id=5, token=b"zz")
        exchange.receive(PEER, encode(stray))
        assert [m.type for _, m in wire.sent] == [MessageType.ACK, MessageType.RST]
        task = asyncio.create_task(
            exchange.request(PEER, request(Code.GET, path="/3/0", message_id=0))
        )
        await _settle()
        mid = wire.sent[-1][1].message_id
        exchange.receive(PEER, encode(Message(type=MessageType.RST, code=0, message_id=mid)))
        with pytest.raises(Unavailable):
            await task

    aio.run(scenario())


def test_observation_notifications() -> None:
    async def scenario() -> None:
        wire = Wire()
        exchange = _exchange(wire, ack_timeout_s=5.0)
        got: list[bytes] = []
        obs = request(Code.GET, path="/3303", message_id=0, options=[(Option.OBSERVE, b"")])
        task = asyncio.create_task(
            exchange.request(PEER, obs, observe=lambda _a, m: got.append(m.payload))
        )
        await _settle()
        sent = wire.sent[-1][1]
        first = response_to(sent, Code.CONTENT, payload=b"0", options=[(Option.OBSERVE, b"\x01")])
        exchange.receive(PEER, encode(first))
        await task
        note = Message(type=MessageType.NON, code=Code.CONTENT, message_id=50, token=sent.token,
                       options=((Option.OBSERVE, b"\x02"),), payload=b"1")  # fmt: skip
        exchange.receive(PEER, encode(note))
        assert got == [b"1"]
        assert exchange.cancel_observations(PEER) == 1
        exchange.receive(PEER, encode(note))
        assert got == [b"1"] and wire.sent[-1][1].type == MessageType.RST

    aio.run(scenario())


def test_no_session_is_unavailable() -> None:
    async def scenario() -> None:
        wire = Wire()
        wire.up = False
        with pytest.raises(Unavailable) as info:
            await _exchange(wire).request(PEER, request(Code.GET, path="/3/0", message_id=0))
        assert info.value.code == "lwm2m.coap.unreachable"

    aio.run(scenario())


def test_block1_assembly() -> None:
    blocks = BlockAssembler(max_payload_bytes=40, max_entries=2, lifetime_s=10)
    add = blocks.add
    assert add(PEER, ("rd",), num=0, size=16, more=True, payload=b"a" * 16, now=0) is None
    assert add(PEER, ("rd",), num=1, size=16, more=False, payload=b"b" * 3, now=1) == (
        b"a" * 16 + b"bbb"
    )


@pytest.mark.parametrize(
    ("blocks", "code"),
    [
        ([(1, True, 16)], "lwm2m.coap.incomplete"),
        ([(0, True, 16), (2, True, 16)], "lwm2m.coap.incomplete"),
        ([(0, True, 10)], "lwm2m.coap.incomplete"),
        ([(0, True, 16), (1, True, 16), (2, True, 16)], "lwm2m.coap.too_large"),
    ],
    ids=["no-first-block", "gap", "short-middle-block", "too-large"],
)
def test_block1_refused(blocks: list[tuple[int, bool, int]], code: str) -> None:
    assembler = BlockAssembler(max_payload_bytes=40, max_entries=2, lifetime_s=10)
    with pytest.raises(InvalidInput) as info:
        for num, more, length in blocks:
            assembler.add(PEER, ("rd",), num=num, size=16, more=more, payload=b"x" * length, now=0)
    assert info.value.code == code


def test_block1_stale_dropped() -> None:
    assembler = BlockAssembler(max_payload_bytes=40, max_entries=2, lifetime_s=10)
    assembler.add(PEER, ("rd",), num=0, size=16, more=True, payload=b"x" * 16, now=0)
    with pytest.raises(InvalidInput):
        assembler.add(PEER, ("rd",), num=1, size=16, more=False, payload=b"y", now=11)


@given(st.lists(st.binary(max_size=64), max_size=20))
@settings(max_examples=200, deadline=None)
def test_any_datagrams_never_raise(datagrams: list[bytes]) -> None:
    async def scenario() -> None:
        wire = Wire()
        exchange = _exchange(wire)
        for data in datagrams:
            exchange.receive(PEER, data)
        await _settle()
        await exchange.close()

    aio.run(scenario())
