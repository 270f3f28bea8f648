"""The simulated LwM2M device's object tree and CoAP handling, pure (no network)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trustfleet.errors import InvalidInput
from trustfleet.lwm2m.coap import Block, Code, Message, MessageType, Option, option_uint, request
from trustfleet.lwm2m.content import SENML_JSON, decode_values
from trustfleet.sim._lwm2m_coap import LWM2M_TLV, TEXT, BlockDownload, handle_message
from trustfleet.sim._lwm2m_tree import (
    FW_DOWNLOADED,
    FW_DOWNLOADING,
    FW_UPDATING,
    Action,
    ObjectTree,
)


def _tree() -> ObjectTree:
    return ObjectTree(
        manufacturer="TrustFleet", model="sim-v1", serial="dev-00000001", firmware_version="1.0.0"
    )


def _tlv(kind: int, ident: int, value: bytes) -> bytes:
    assert len(value) < 256
    return (
        bytes([(kind << 6) | (0x08 if len(value) > 7 else len(value)), ident])
        + (bytes([len(value)]) if len(value) > 7 else b"")
        + value
    )


def _security_instance(uri: str, identity: bytes, secret: bytes, *, bootstrap: bool) -> bytes:
    body = (
        _tlv(3, 0, uri.encode())
        + _tlv(3, 1, b"\x01" if bootstrap else b"\x00")
        + _tlv(3, 2, b"\x00")
        + _tlv(3, 3, identity)
        + _tlv(3, 5, secret)
        + _tlv(3, 10, b"\x01")
    )
    return _tlv(0, 1, body)


def _req(
    code: int, path: str, *, payload: bytes = b"", form: int | None = None, mid: int = 1
) -> Message:
    return request(
        code, path=path, message_id=mid, token=b"t", payload=payload, content_format=form
    )


def test_read_device_resource_as_text() -> None:
    answer = handle_message(_tree(), _req(Code.GET, "/3/0/3"), bootstrap=False)
    assert answer.type == MessageType.ACK and answer.code == Code.CONTENT
    assert answer.payload == b"1.0.0" and answer.content_format() == TEXT


def test_observe_temperature_instance_senml() -> None:
    message = _req(Code.GET, "/3303/0").with_options([(Option.OBSERVE, option_uint(0))])
    answer = handle_message(_tree(), message, bootstrap=False)
    assert answer.observe() == 0
    values = decode_values(answer.payload, content_format=SENML_JSON, base_path="/3303/0")
    assert {(value.path, value.value) for value in values} >= {("/3303/0/5701", "Cel")}


def test_bootstrap_writes_then_finish_names_dm_server() -> None:
    tree = _tree()
    payload = _security_instance(
        "coaps://127.0.0.1:5684", b"dev-00000001:dm", b"\x11" * 16, bootstrap=False
    )
    assert handle_message(tree, _req(Code.DELETE, "/0"), bootstrap=True).code == Code.DELETED
    answer = handle_message(
        tree, _req(Code.PUT, "/0", payload=payload, form=LWM2M_TLV), bootstrap=True
    )
    assert answer.code == Code.CHANGED
    finish = handle_message(tree, _req(Code.POST, "/bs"), bootstrap=True)
    assert finish.code == Code.CHANGED
    assert tree.dm_server() == ("coaps://127.0.0.1:5684", "dev-00000001:dm", b"\x11" * 16)
    assert tree.take_actions() == [Action("bootstrap_finished", "coaps://127.0.0.1:5684")]
    assert "11111111" not in repr(tree)


BAD_CASES = [
    ("security-read", Code.GET, "/0/1/5", b"", None, False, Code.UNAUTHORIZED),
    ("security-write-by-dm", Code.PUT, "/0/1/5", b"x", 42, False, Code.UNAUTHORIZED),
    ("delete-by-dm", Code.DELETE, "/3303/0", b"", None, False, Code.METHOD_NOT_ALLOWED),
    ("write-read-only", Code.PUT, "/3/0/0", b"evil", TEXT, False, Code.METHOD_NOT_ALLOWED),
    ("bad-path", Code.GET, "/x/y", b"", None, False, Code.NOT_FOUND),
    ("too-deep", Code.GET, "/3/0/0/0", b"", None, False, Code.BAD_REQUEST),
    ("truncated-tlv", Code.PUT, "/0", b"\xc8\x00\x20abc", LWM2M_TLV, True, Code.BAD_REQUEST),
    ("unsupported-format", Code.PUT, "/5/0/1", b"{}", 50, False, Code.BAD_REQUEST),
    ("update-before-download", Code.POST, "/5/0/2", b"", None, False, Code.METHOD_NOT_ALLOWED),
    ("finish-without-dm", Code.POST, "/bs", b"", None, True, 134),
]


@pytest.mark.parametrize(
    ("code", "path", "payload", "form", "bootstrap", "expected"),
    [case[1:] for case in BAD_CASES],
    ids=[case[0] for case in BAD_CASES],
)
def test_refused_requests(  # noqa: PLR0917  # one parameter per table column
    code: int, path: str, payload: bytes, form: int | None, bootstrap: bool, expected: int
) -> None:
    answer = handle_message(
        _tree(), _req(code, path, payload=payload, form=form), bootstrap=bootstrap
    )
    assert answer.code == expected


def test_firmware_states_package_uri_to_update() -> None:
    tree = _tree()
    write = _req(Code.PUT, "/5/0/1", payload=b"coaps://127.0.0.1:5684/fw/abc/manifest", form=TEXT)
    assert handle_message(tree, write, bootstrap=False).code == Code.CHANGED
    assert tree.value(5, 0, 3) == FW_DOWNLOADING
    assert tree.take_actions() == [Action("download", "coaps://127.0.0.1:5684/fw/abc/manifest")]
    tree.set_firmware(state=FW_DOWNLOADED)
    assert handle_message(tree, _req(Code.POST, "/5/0/2"), bootstrap=False).code == Code.CHANGED
    assert tree.value(5, 0, 3) == FW_UPDATING
    assert tree.take_actions() == [Action("update")]
    tree.installed("1.1.0")
    assert (tree.value(3, 0, 3), tree.value(5, 0, 3), tree.value(5, 0, 5)) == ("1.1.0", 0, 1)


def test_server_write_of_lifetime_in_tlv_is_refused_to_dm_but_taken_from_bootstrap() -> None:
    tree = _tree()
    payload = _tlv(3, 1, b"\x01\x2c")
    dm = handle_message(
        tree, _req(Code.PUT, "/1/0", payload=payload, form=LWM2M_TLV), bootstrap=False
    )
    assert dm.code == Code.UNAUTHORIZED
    bs = handle_message(
        tree, _req(Code.PUT, "/1/0", payload=payload, form=LWM2M_TLV), bootstrap=True
    )
    assert bs.code == Code.CHANGED and tree.value(1, 0, 1) == 300


@given(st.binary(max_size=64))
def test_garbage_writes_answer_a_code_never_raise(data: bytes) -> None:
    answer = handle_message(
        _tree(), _req(Code.PUT, "/0", payload=data, form=LWM2M_TLV), bootstrap=True
    )
    assert answer.code in {Code.CHANGED, Code.BAD_REQUEST}


def _block_response(num: int, more: bool, payload: bytes, *, code: int = Code.CONTENT) -> Message:
    return Message(
        type=MessageType.ACK,
        code=code,
        message_id=num,
        token=b"t",
        options=((Option.BLOCK2, Block(num=num, more=more, szx=2).encode()),),
        payload=payload,
    )


def test_block_download_assembles_in_order() -> None:
    download = BlockDownload(path=("fw", "x"), max_bytes=1000, szx=2)
    download.accept(_block_response(0, True, b"a" * 64))
    assert download.next_block().num == 1
    download.accept(_block_response(1, False, b"b" * 10))
    assert download.done and bytes(download.received) == b"a" * 64 + b"b" * 10


@pytest.mark.parametrize(
    ("responses", "code"),
    [
        ([_block_response(1, True, b"a" * 64)], "lwm2m.fw.block_order"),
        (
            [_block_response(0, True, b"a" * 64), _block_response(1, True, b"a" * 64)],
            "lwm2m.fw.too_large",
        ),
        ([_block_response(0, False, b"", code=Code.NOT_FOUND)], "lwm2m.fw.download_refused"),
    ],
    ids=["out-of-order", "too-large", "not-found"],
)
def test_block_download_refusals(responses: list[Message], code: str) -> None:
    download = BlockDownload(path=("fw", "x"), max_bytes=100, szx=2)
    with pytest.raises(InvalidInput) as caught:
        for response in responses:
            download.accept(response)
    assert caught.value.code == code
