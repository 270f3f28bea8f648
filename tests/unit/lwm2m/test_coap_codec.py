"""CoAP codec (RFC 7252), Block (RFC 7959) and Observe (RFC 7641) values."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trustfleet.errors import InvalidInput
from trustfleet.lwm2m import coap
from trustfleet.lwm2m.coap import (
    Block,
    CoapFormatError,
    Code,
    Message,
    MessageType,
    Option,
    decode,
    encode,
)


def test_rfc7252_figure_get_with_token_and_path() -> None:
    # CON GET /3/0 with token 0x71 and message id 0x1234, hand-encoded from RFC 7252 §3.
    wire = bytes.fromhex("4101123471b1330130")
    message = decode(wire)
    assert message.type is MessageType.CON
    assert message.code == Code.GET
    assert message.message_id == 0x1234
    assert message.token == b"\x71"
    assert message.uri_path() == ("3", "0")
    assert encode(message) == wire


def test_request_builder_and_piggybacked_response() -> None:
    req = coap.request(
        Code.POST,
        path="/rd",
        query=("ep=dev-0001", "lt=300", "lwm2m=1.1", "b=U"),
        message_id=7,
        token=b"\x01\x02",
        payload=b"</1/0>,</3/0>",
        content_format=40,
    )
    back = decode(encode(req))
    assert back == req
    assert back.uri_path() == ("rd",)
    assert back.uri_query() == ("ep=dev-0001", "lt=300", "lwm2m=1.1", "b=U")
    assert back.content_format() == 40
    resp = coap.response_to(
        back, Code.CREATED, options=((Option.LOCATION_PATH, b"rd"), (Option.LOCATION_PATH, b"a1"))
    )
    assert resp.type is MessageType.ACK and resp.message_id == 7 and resp.token == b"\x01\x02"
    assert decode(encode(resp)).location_path() == ("rd", "a1")


def test_separate_and_non_responses() -> None:
    con = coap.request(Code.GET, path="/3/0", message_id=1, token=b"t")
    sep = coap.response_to(con, Code.CONTENT, payload=b"x", message_id=9)
    assert sep.type is MessageType.CON and sep.message_id == 9
    non = coap.request(Code.GET, path="/", message_id=2, confirmable=False)
    with pytest.raises(ValueError):
        coap.response_to(non, Code.CONTENT)
    assert coap.response_to(non, Code.CONTENT, message_id=3).type is MessageType.NON


def test_empty_ack_reset_and_ping() -> None:
    con = coap.request(Code.GET, path="/", message_id=0xBEEF, token=b"abc")
    assert encode(coap.empty_ack(con)) == bytes.fromhex("6000beef")
    assert encode(coap.reset(con)) == bytes.fromhex("7000beef")
    ping = decode(bytes.fromhex("40000001"))
    assert ping.is_empty and ping.type is MessageType.CON


def test_option_extensions_13_and_14() -> None:
    long_value = b"x" * 300
    medium = b"y" * 20
    message = Message(
        type=MessageType.NON,
        code=Code.POST,
        message_id=1,
        options=(
            (Option.SIZE1, option := coap.option_uint(70000)),
            (2000, long_value),
            (300, medium),
        ),
    )
    back = decode(encode(message))
    assert back.option(2000) == long_value
    assert back.option(300) == medium
    assert back.option(Option.SIZE1) == option
    assert [n for n, _ in back.options] == [60, 300, 2000]


def test_options_sorted_stably_within_a_number() -> None:
    message = Message(
        type=MessageType.CON,
        code=Code.GET,
        message_id=1,
        options=((Option.URI_QUERY, b"b"), (Option.URI_PATH, b"1"), (Option.URI_PATH, b"2")),
    )
    back = decode(encode(message))
    assert back.uri_path() == ("1", "2")
    assert back.uri_query() == ("b",)


def test_repr_hides_payload() -> None:
    message = coap.request(Code.PUT, path="/0/1/5", message_id=1, payload=b"SECRETPSK")
    assert "SECRETPSK" not in repr(message)
    assert "payload_bytes=9" in repr(message)
    assert "0.03" in repr(message)


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (b"", "shorter"),
        (bytes.fromhex("400100"), "shorter"),
        (bytes.fromhex("80010001"), "version"),
        (bytes.fromhex("49010001"), "token length"),
        (bytes.fromhex("42010001aa"), "token truncated"),
        (bytes.fromhex("40000001ff"), "empty message"),
        (bytes.fromhex("40200001"), "reserved code class"),
        (bytes.fromhex("40e00001"), "reserved code class"),
        (bytes.fromhex("40010001ff"), "no payload"),
        (bytes.fromhex("40010001f1"), "reserved"),
        (bytes.fromhex("400100011f"), "reserved"),
        (bytes.fromhex("40010001d1"), "truncated"),
        (bytes.fromhex("40010001e100"), "truncated"),
        (bytes.fromhex("40010001b33030"), "value truncated"),
        (bytes.fromhex("40010001e0ffffe0ffff"), "option number"),
    ],
    ids=[
        "empty",
        "short-header",
        "version-2",
        "token-length-9",
        "token-truncated",
        "empty-message-with-marker",
        "code-class-1",
        "code-class-7",
        "marker-without-payload",
        "delta-nibble-15",
        "length-nibble-15",
        "delta-13-truncated",
        "delta-14-truncated",
        "value-truncated",
        "option-number-over-65535",
    ],
)
def test_malformed_messages(wire: bytes, reason: str) -> None:
    with pytest.raises(CoapFormatError) as err:
        decode(wire)
    assert reason in err.value.reason
    assert err.value.code == "lwm2m.coap.malformed"
    assert isinstance(err.value, InvalidInput)


def test_max_options_bound() -> None:
    wire = bytes.fromhex("40010001") + bytes.fromhex("b130") + bytes.fromhex("0130") * 70
    with pytest.raises(CoapFormatError, match="options"):
        decode(wire)
    assert len(decode(wire, max_options=100).uri_path()) == 71


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"", Block(num=0, more=False, szx=0)),
        (bytes([0x0E]), Block(num=0, more=True, szx=6)),
        (bytes([0x16]), Block(num=1, more=False, szx=6)),
        (bytes.fromhex("ffffe6"), Block(num=(1 << 20) - 2, more=False, szx=6)),
        (bytes.fromhex("fffff6"), Block(num=(1 << 20) - 1, more=False, szx=6)),
    ],
    ids=["empty", "first-more-1024", "second-1024", "num-big", "num-max"],
)
def test_block_values(value: bytes, expected: Block) -> None:
    block = Block.decode(value)
    assert block == expected
    assert Block.decode(block.encode()) == block
    assert block.offset == block.num * block.size


@pytest.mark.parametrize(
    "value",
    [bytes([0x07]), bytes.fromhex("00000016")],
    ids=["szx-7-reserved", "four-bytes"],
)
def test_block_bad_values(value: bytes) -> None:
    with pytest.raises(CoapFormatError):
        Block.decode(value)


def test_block_helpers_on_message() -> None:
    message = coap.request(
        Code.PUT,
        path="/fw/x",
        message_id=1,
        options=(
            (Option.BLOCK1, Block(num=3, more=True, szx=2).encode()),
            (Option.BLOCK2, Block(num=0, more=False, szx=5).encode()),
        ),
    )
    back = decode(encode(message))
    assert back.block1() == Block(num=3, more=True, szx=2)
    assert back.block2() == Block(num=0, more=False, szx=5)
    assert Block.szx_for(512) == 5
    with pytest.raises(ValueError):
        Block.szx_for(2048)


def test_bad_option_values_raise_format_error() -> None:
    message = Message(
        type=MessageType.CON,
        code=Code.GET,
        message_id=1,
        options=(
            (Option.OBSERVE, b"\x00\x00\x00\x01"),
            (Option.URI_PATH, b"\xff"),
            (Option.CONTENT_FORMAT, b"\x01"),
            (Option.CONTENT_FORMAT, b"\x02"),
        ),
    )
    with pytest.raises(CoapFormatError):
        message.observe()
    with pytest.raises(CoapFormatError):
        message.uri_path()
    with pytest.raises(CoapFormatError, match="repeated"):
        message.content_format()


def test_observe_and_critical_options() -> None:
    message = coap.request(
        Code.GET,
        path="/3303/0",
        message_id=1,
        options=(
            (Option.OBSERVE, coap.option_uint(0)),
            (Option.ACCEPT, coap.option_uint(110)),
            (9, b""),
        ),
    )
    back = decode(encode(message))
    assert back.observe() == 0
    assert back.accept() == 110
    assert back.unknown_critical(int(o) for o in Option) == (9,)
    assert back.without_options([9]).unknown_critical(int(o) for o in Option) == ()


@pytest.mark.parametrize(
    ("previous", "current", "elapsed_s", "newer"),
    [
        (1, 2, 0.0, True),
        (2, 1, 0.0, False),
        (5, 5, 0.0, False),
        ((1 << 24) - 1, 3, 0.0, True),
        (3, (1 << 24) - 1, 0.0, False),
        (2, 1, 129.0, True),
    ],
    ids=["increment", "older", "same", "wrap-around", "far-behind", "stale-after-128s"],
)
def test_observe_freshness(previous: int, current: int, elapsed_s: float, newer: bool) -> None:
    assert coap.observe_is_newer(previous, current, elapsed_s=elapsed_s) is newer


def test_constructor_bounds() -> None:
    with pytest.raises(CoapFormatError):
        Message(type=MessageType.CON, code=Code.GET, message_id=1, token=b"123456789")
    with pytest.raises(CoapFormatError):
        Message(type=MessageType.CON, code=Code.GET, message_id=70000)
    with pytest.raises(CoapFormatError):
        Message(type=MessageType.ACK, code=Code.EMPTY, message_id=1, token=b"x")
    assert coap.code_text(Code.CONTENT) == "2.05"
    assert coap.code_text(Code.NOT_FOUND) == "4.04"
    assert coap.decode_uint(b"\x00\x01") == 1
    with pytest.raises(ValueError):
        coap.option_uint(-1)


_options = st.lists(
    st.tuples(st.integers(min_value=1, max_value=65535), st.binary(max_size=300)), max_size=12
)
_codes = st.sampled_from([c for c in range(1, 256) if c >> 5 in (0, 2, 4, 5)])


_messages = st.builds(
    Message,
    type=st.sampled_from(MessageType),
    code=_codes,
    message_id=st.integers(min_value=0, max_value=0xFFFF),
    token=st.binary(max_size=8),
    options=_options.map(tuple),
    payload=st.binary(max_size=200),
)


@given(_messages)
def test_round_trip(message: Message) -> None:
    back = decode(encode(message))
    assert back.options == tuple(sorted(message.options, key=lambda o: o[0]))
    assert back == Message(
        type=message.type,
        code=message.code,
        message_id=message.message_id,
        token=message.token,
        options=back.options,
        payload=message.payload,
    )
    assert encode(back) == encode(message)


@given(st.binary(max_size=400))
def test_decode_arbitrary_bytes_never_raises_otherwise(data: bytes) -> None:
    try:
        message = decode(data, max_options=16)
    except CoapFormatError:
        return
    assert decode(encode(message), max_options=16) == message


@given(st.integers(min_value=0, max_value=(1 << 32) - 1))
def test_uint_round_trip(value: int) -> None:
    encoded = coap.option_uint(value)
    assert coap.decode_uint(encoded) == value
    assert not encoded or encoded[0] != 0
