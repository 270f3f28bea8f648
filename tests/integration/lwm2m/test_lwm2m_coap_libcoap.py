"""The CoAP codec against an independent implementation: libcoap's ``coap-client-openssl``.

The test plays a CoAP server on a loopback UDP socket with :mod:`trustfleet.lwm2m.coap`: it
decodes libcoap's requests (path, query, Accept, Block1 uploads) and answers with piggybacked
responses and Block2 transfers that libcoap reassembles and prints.
"""

from __future__ import annotations

import shutil
import socket
import subprocess

import pytest

from trustfleet.lwm2m import coap
from trustfleet.lwm2m.coap import Block, Code, Option

CLIENT = shutil.which("coap-client-openssl")
pytestmark = pytest.mark.skipif(CLIENT is None, reason="libcoap3-bin (coap-client-openssl) missing")


def _serve(sock: socket.socket, handler: object, *, rounds: int) -> list[coap.Message]:
    seen = []
    for _ in range(rounds):
        data, peer = sock.recvfrom(2048)
        message = coap.decode(data)
        seen.append(message)
        assert callable(handler)
        reply = handler(message)
        if reply is not None:
            sock.sendto(coap.encode(reply), peer)
    return seen


def _client(args: list[str]) -> subprocess.Popen[bytes]:
    assert CLIENT is not None
    return subprocess.Popen(
        [CLIENT, "-B", "10", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


@pytest.fixture
def udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(10)
    yield sock  # type: ignore[misc]
    sock.close()


def _finish(proc: subprocess.Popen[bytes]) -> bytes:
    try:
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return out


def test_get_with_query_and_accept(udp: socket.socket) -> None:
    port = udp.getsockname()[1]
    proc = _client(["-A", "110", f"coap://127.0.0.1:{port}/3303/0?ep=dev-0001&lt=60"])
    body = b'[{"bn":"/3303/0/","n":"5700","v":21.5}]'

    def answer(req: coap.Message) -> coap.Message:
        return coap.response_to(req, Code.CONTENT, payload=body, content_format=110)

    (req,) = _serve(udp, answer, rounds=1)
    assert req.code == Code.GET and req.type is coap.MessageType.CON
    assert req.uri_path() == ("3303", "0")
    assert req.uri_query() == ("ep=dev-0001", "lt=60")
    assert req.accept() == 110
    assert _finish(proc).strip() == body


def test_block2_download_reassembled_by_libcoap(udp: socket.socket) -> None:
    port = udp.getsockname()[1]
    image = bytes(range(256)) * 5  # 1280 bytes: 20 blocks of 64
    proc = _client(["-b", "64", f"coap://127.0.0.1:{port}/fw/image"])

    def answer(req: coap.Message) -> coap.Message:
        asked = req.block2() or Block(num=0, more=False, szx=2)
        block = Block(num=asked.num, more=asked.offset + asked.size < len(image), szx=asked.szx)
        chunk = image[block.offset : block.offset + block.size]
        return coap.response_to(
            req, Code.CONTENT, payload=chunk, options=((Option.BLOCK2, block.encode()),)
        )

    requests = _serve(udp, answer, rounds=20)
    assert [r.block2().num if r.block2() else 0 for r in requests] == list(range(20))
    assert _finish(proc) == image + b"\n"  # libcoap prints the reassembled body and a newline


def test_block1_upload_parsed(udp: socket.socket) -> None:
    port = udp.getsockname()[1]
    text = "x" * 100 + "y" * 60
    proc = _client(["-m", "put", "-b", "32", "-e", text, f"coap://127.0.0.1:{port}/5/0/0"])
    received = bytearray()

    def answer(req: coap.Message) -> coap.Message:
        block = req.block1()
        assert block is not None and block.size == 32 and block.offset == len(received)
        received.extend(req.payload)
        code = Code.CONTINUE if block.more else Code.CHANGED
        return coap.response_to(req, code, options=((Option.BLOCK1, block.encode()),))

    requests = _serve(udp, answer, rounds=5)
    assert received.decode() == text
    assert [r.block1() for r in requests][-1] == Block(num=4, more=False, szx=1)
    _finish(proc)
