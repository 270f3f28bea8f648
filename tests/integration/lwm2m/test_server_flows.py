"""The LwM2M server over real DTLS (certificate mode) with a test device and a fake backend:
registration, reads and observations into readings, update/de-register, ownership, bootstrap,
firmware (Block2 package serving, object 5 driver), quarantine and revocation."""

from __future__ import annotations

import hashlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dtls_peers import ThrowawayPki, make_pki
from lwm2m_harness import Device, FakeBackend, Running, image
from OpenSSL import SSL

from trustfleet.errors import PermissionDenied
from trustfleet.lwm2m import content
from trustfleet.lwm2m.coap import (
    Block,
    Code,
    Message,
    MessageType,
    Option,
    option_uint,
    request,
    response_to,
)
from trustfleet.lwm2m.ports import Credential, FirmwareJob

LINKS = b'</>;rt="oma.lwm2m";ct=110,</1/0>,</3/0>,</3303/0>,</5/0>'
DEVICE_INFO = b'[{"bn":"/3/0/","n":"0","vs":"ACME"},{"n":"3","vs":"1.0.0"},{"n":"9","v":97}]'


@pytest.fixture
def pki(tmp_path: Path) -> ThrowawayPki:
    return make_pki(tmp_path)


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend(
        devices={"dev-00000001": "dm", "dev-00000002": "dm", "dev-0000000b": "bootstrap"}
    )


@pytest.fixture
def running(pki: ThrowawayPki, backend: FakeBackend) -> Iterator[Running]:
    server = Running(pki, backend)
    try:
        yield server
    finally:
        server.close()


def wait_for(condition: object, *, rounds: int = 200) -> None:
    for _ in range(rounds):
        if callable(condition) and condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met")


def _device(pki: ThrowawayPki, running: Running, name: str) -> Device:
    device = Device(pki, running.port, name)
    observed: list[Message] = []
    device.handlers["GET /3/0"] = lambda m: response_to(
        m, Code.CONTENT, payload=DEVICE_INFO, content_format=content.SENML_JSON
    )

    def temperature(m: Message) -> Message:
        observed.append(m)
        return response_to(
            m, Code.CONTENT, content_format=content.SENML_JSON,
            options=[(Option.OBSERVE, option_uint(1))],
            payload=b'[{"bn":"/3303/0/","n":"5700","v":21.5,"u":"Cel"}]',
        )  # fmt: skip

    device.handlers["GET /3303"] = temperature
    device.observed = observed  # type: ignore[attr-defined]  # test-only attribute
    return device


def register(device: Device, *, ep: str | None = None, links: bytes = LINKS) -> Message:
    return device.call(
        request(
            Code.POST,
            path="/rd",
            message_id=device.mid(),
            token=b"r1",
            query=[f"ep={ep or device.name}", "lt=60", "lwm2m=1.1", "b=U"],
            payload=links,
            content_format=content.LINK_FORMAT,
        )
    )


def test_register_read_observe_update_deregister(
    pki: ThrowawayPki, running: Running, backend: FakeBackend
) -> None:
    device = _device(pki, running, "dev-00000001")
    answer = register(device)
    assert answer.code == Code.CREATED
    location = answer.location_path()
    assert location[0] == "rd" and len(location[1]) == 16
    device.pump(lambda m: m.is_request and m.uri_path() == ("3303",))
    wait_for(lambda: len(backend.readings) >= 4)
    assert ("dev-00000001", "/3/0/0", "ACME") in [(d, r.path, r.value) for d, r in backend.readings]
    first = device.observed[0]  # type: ignore[attr-defined]
    device.notify(first, observe=2, payload=b'[{"bn":"/3303/0/","n":"5700","v":22.0,"u":"Cel"}]',
                  fmt=content.SENML_JSON)  # fmt: skip
    wait_for(lambda: any(r.value == 22.0 and r.unit == "Cel" for _, r in backend.readings))
    update = device.call(request(Code.POST, path=location, message_id=device.mid(), token=b"u1",
                                 query=["lt=120"]))  # fmt: skip
    assert update.code == Code.CHANGED
    assert backend.registrations[-1][0].lifetime_s == 120
    gone = device.call(request(Code.DELETE, path=location, message_id=device.mid(), token=b"d1"))
    assert gone.code == Code.DELETED
    wait_for(lambda: backend.deregistrations == [("dev-00000001", "deregistered")])
    again = device.call(request(Code.POST, path=location, message_id=device.mid(), token=b"u2"))
    assert again.code == Code.NOT_FOUND
    device.close()


def test_duplicate_register_answered_once(
    pki: ThrowawayPki, running: Running, backend: FakeBackend
) -> None:
    device = _device(pki, running, "dev-00000001")
    message = request(Code.POST, path="/rd", message_id=77, token=b"r1",
                      query=["ep=dev-00000001"], payload=LINKS)  # fmt: skip
    first = device.call(message)
    second = device.call(message)
    assert first.location_path() == second.location_path()
    assert len(backend.registrations) == 1
    device.close()


@pytest.mark.parametrize(
    ("ep", "links", "code", "refusal"),
    [
        ("dev-00000002", LINKS, Code.FORBIDDEN, "lwm2m.endpoint_mismatch"),
        (None, b"</3/0/1>", Code.BAD_REQUEST, None),
        (None, b"<" * 5, Code.BAD_REQUEST, None),
        ("bad ep", LINKS, Code.BAD_REQUEST, None),
    ],
    ids=["another-endpoint", "resource-link", "garbage-links", "malformed-ep"],
)
def test_register_refused(
    pki: ThrowawayPki, running: Running, backend: FakeBackend, *,
    ep: str | None, links: bytes, code: int, refusal: str | None,
) -> None:  # fmt: skip
    device = _device(pki, running, "dev-00000001")
    assert register(device, ep=ep, links=links).code == code
    assert backend.registrations == []
    if refusal:
        assert refusal in backend.refusals
    device.close()


def test_other_devices_location_forbidden(
    pki: ThrowawayPki, running: Running, backend: FakeBackend
) -> None:
    one = _device(pki, running, "dev-00000001")
    two = _device(pki, running, "dev-00000002")
    location = register(one).location_path()
    for method in (Code.POST, Code.DELETE):
        answer = two.call(request(method, path=location, message_id=two.mid(), token=b"x"))
        assert answer.code == Code.FORBIDDEN
    assert backend.deregistrations == []
    one.close()
    two.close()


def test_bad_requests_and_garbage(pki: ThrowawayPki, running: Running) -> None:
    device = _device(pki, running, "dev-00000001")
    device.dtls.send(b"\x00garbage")  # a malformed CoAP message in a good record: dropped
    cases = [
        (request(Code.GET, path="/nothing", message_id=device.mid(), token=b"a"), Code.NOT_FOUND),
        (request(Code.GET, path="/rd", message_id=device.mid(), token=b"b"),
         Code.METHOD_NOT_ALLOWED),
        (request(Code.POST, path="/rd", message_id=device.mid(), token=b"c",
                 options=[(9, b"x")]), Code.BAD_OPTION),
    ]  # fmt: skip
    for message, code in cases:
        assert device.call(message).code == code
    # a NON request gets a NON response with its own message id
    non = request(Code.GET, path="/nothing", message_id=device.mid(), token=b"n", confirmable=False)
    answer = device.call(non)
    assert (answer.type, answer.code) == (MessageType.NON, Code.NOT_FOUND)
    assert running.server._exchange.stats.malformed >= 1  # the counter
    device.close()


def test_bootstrap_sequence(pki: ThrowawayPki, running: Running, backend: FakeBackend) -> None:
    device = Device(pki, running.port, "dev-0000000b")
    for key in ("DELETE /0", "DELETE /1", "PUT /0/1", "PUT /1/0"):
        code = Code.DELETED if key.startswith("DELETE") else Code.CHANGED
        device.handlers[key] = lambda m, code=code: response_to(m, code)
    device.handlers["POST /bs"] = lambda m: response_to(m, Code.CHANGED)
    answer = device.call(request(Code.POST, path="/bs", message_id=device.mid(), token=b"b",
                                 query=["ep=dev-0000000b", "pct=110"]))  # fmt: skip
    assert answer.code == Code.CHANGED
    device.pump(lambda m: m.is_request and m.uri_path() == ("bs",))
    steps = [(Code(m.code).name, "/" + "/".join(m.uri_path())) for m in device.seen]
    assert steps == [("DELETE", "/0"), ("DELETE", "/1"), ("PUT", "/0/1"), ("PUT", "/1/0"),
                     ("POST", "/bs")]  # fmt: skip
    security = {v.path: v.value for v in content.decode_values(
        device.seen[2].payload, content_format=content.LWM2M_TLV, base_path="/0/1")}  # fmt: skip
    assert security["/0/1/3"] == b"dev-0000000b:dm" and security["/0/1/5"] == b"\x07" * 16
    # Bootstrap-Finish acknowledged: the server closes the bootstrap session (close_notify), so
    # that the client's next handshake uses the written credential (Wakaama keeps it otherwise)
    assert _closed_by_server(device)
    device.close()
    # a bootstrap credential may not register, on a new session either
    again = Device(pki, running.port, "dev-0000000b")
    assert register(again).code == Code.FORBIDDEN
    again.close()


def _closed_by_server(device: Device) -> bool:
    for _ in range(20):
        try:
            device.dtls.recv()
        except TimeoutError:
            continue
        except SSL.ZeroReturnError:
            return True
    return False


def test_firmware_job_driven_and_package_served(
    pki: ThrowawayPki, running: Running, backend: FakeBackend, tmp_path: Path
) -> None:
    size = 200
    path = image(tmp_path, size)
    job = FirmwareJob(
        device_id="dev-00000001", model="m1", version="2.0.0", campaign_id="c1",
        package_uri="coaps://127.0.0.1:5684/fw/m1/2.0.0/manifest", manifest=b"M" * 70,
        image=path, image_size=size, image_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
    )  # fmt: skip
    backend.packages[("m1", "2.0.0")] = job
    device = _device(pki, running, "dev-00000001")
    firmware: dict[str, Message] = {}

    def observe_fw(m: Message) -> Message:
        if m.observe() is not None:  # not the plain reads of object 5 after registration
            firmware["/" + "/".join(m.uri_path())] = m
        return response_to(m, Code.CONTENT, payload=b"0", content_format=content.TEXT,
                           options=[(Option.OBSERVE, option_uint(1))])  # fmt: skip

    device.handlers["PUT /5/0/1"] = lambda m: response_to(m, Code.CHANGED)
    device.handlers["GET /5/0/3"] = observe_fw
    device.handlers["GET /5/0/5"] = observe_fw
    device.handlers["POST /5/0/2"] = lambda m: response_to(m, Code.CHANGED)
    register(device)
    backend.jobs["dev-00000001"] = job
    device.pump(
        lambda m: m.is_request and m.uri_path() == ("5", "0", "5") and m.observe() is not None
    )
    uri = next(m for m in device.seen if m.uri_path() == ("5", "0", "1"))
    written = content.decode_values(
        uri.payload, content_format=content.LWM2M_TLV, base_path="/5/0/1"
    )
    assert written[0].value == job.package_uri
    # the device pulls the image block-wise (Block2, 64-byte blocks)
    received, num = b"", 0
    while True:
        answer = device.call(request(
            Code.GET, path="/fw/m1/2.0.0/image", message_id=device.mid(), token=b"f%d" % num,
            options=[(Option.BLOCK2, Block(num=num, more=False, szx=2).encode())]))  # fmt: skip
        assert answer.code == Code.CONTENT
        block = answer.block2()
        assert block is not None
        received += answer.payload
        if not block.more:
            break
        num += 1
    assert received == path.read_bytes()
    missing = device.call(request(Code.GET, path="/fw/m1/9.9.9/manifest", message_id=device.mid(),
                                  token=b"nf"))  # fmt: skip
    assert missing.code == Code.NOT_FOUND
    state = firmware["/5/0/3"]
    device.notify(state, observe=2, payload=b"1", fmt=content.TEXT)
    device.notify(state, observe=3, payload=b"2", fmt=content.TEXT)
    device.pump(lambda m: m.is_request and m.uri_path() == ("5", "0", "2"))
    device.notify(firmware["/5/0/5"], observe=2, payload=b"1", fmt=content.TEXT)
    wait_for(lambda: ("dev-00000001", 2, 1) in backend.firmware_states)
    states = [(s, r) for _, s, r in backend.firmware_states]
    assert (1, 0) in states and (2, 0) in states
    device.close()


def test_quarantined_device_registers_but_is_not_read(
    pki: ThrowawayPki, running: Running, backend: FakeBackend
) -> None:
    backend.quarantined.add("dev-00000001")
    device = _device(pki, running, "dev-00000001")
    assert register(device).code == Code.CREATED
    with pytest.raises(PermissionDenied) as info:
        running.call(running.server.execute("dev-00000001", "/3/0/4"))
    assert info.value.code == "lwm2m.device.quarantined"
    assert backend.readings == [] and device.seen == []
    device.close()


def test_registration_expires(pki: ThrowawayPki, backend: FakeBackend) -> None:
    server = Running(pki, backend, min_lifetime_s=1, ack_timeout_s=0.05, max_retransmit=0)
    try:
        device = _device(pki, server, "dev-00000001")
        query = ["ep=dev-00000001", "lt=1"]
        message = request(Code.POST, path="/rd", message_id=device.mid(), token=b"r", query=query)
        answer = device.call(message)
        assert answer.code == Code.CREATED
        wait_for(lambda: backend.deregistrations == [("dev-00000001", "expired")])
        device.close()
    finally:
        server.close()


def test_register_block1(pki: ThrowawayPki, running: Running, backend: FakeBackend) -> None:
    device = _device(pki, running, "dev-00000001")
    links = b",".join(b"</%d/0>" % n for n in range(1, 30))
    chunks = [links[i : i + 32] for i in range(0, len(links), 32)]
    for num, chunk in enumerate(chunks):
        more = num < len(chunks) - 1
        answer = device.call(request(
            Code.POST, path="/rd", message_id=device.mid(), token=b"b%d" % num,
            query=["ep=dev-00000001"], payload=chunk,
            options=[(Option.BLOCK1, Block(num=num, more=more, szx=1).encode())]))  # fmt: skip
        assert answer.code == (Code.CONTINUE if more else Code.CREATED)
    assert len(backend.registrations[0][0].objects) == 29
    device.close()


def test_revocation_closes_session_and_drops_registration(
    pki: ThrowawayPki, running: Running, backend: FakeBackend
) -> None:
    device = _device(pki, running, "dev-00000001")
    register(device)
    backend.revoked.add("dev-00000001")
    backend.changes.append("dev-00000001")
    wait_for(lambda: ("dev-00000001", "revoked") in backend.deregistrations)
    assert running.server.registrations() == []
    device.close()


PSK = b"secret-psk-01234"


def coap_client(
    port: int, *args: str, identity: str, key: bytes
) -> subprocess.CompletedProcess[str]:
    """libcoap's coap-client-openssl in PSK mode (one request; it exits after the response)."""
    return subprocess.run(  # fixed argv, test peer
        ["coap-client-openssl", "-u", identity, "-k", key.decode(), "-B", "10", *args],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def test_psk_register_with_coap_client(running: Running, backend: FakeBackend) -> None:
    backend.devices["dev-00000003"] = "dm"
    backend.psks["dev-00000003:dm"] = Credential(
        identity="dev-00000003:dm", device_id="dev-00000003", purpose="dm", key=PSK
    )
    uri = f"coaps://127.0.0.1:{running.port}/rd?ep=dev-00000003&lt=60&lwm2m=1.1"
    result = coap_client(running.port, "-m", "post", "-t", "40", "-e", "</3/0>", uri,
                         identity="dev-00000003:dm", key=PSK)  # fmt: skip
    assert result.returncode == 0, result.stderr
    wait_for(lambda: len(backend.registrations) == 1)
    registration = backend.registrations[0][0]
    assert (registration.device_id, registration.mode, registration.objects) == (
        "dev-00000003",
        "psk",
        ("/3/0",),
    )


def test_psk_wrong_key_refused(running: Running, backend: FakeBackend) -> None:
    backend.devices["dev-00000003"] = "dm"
    backend.psks["dev-00000003:dm"] = Credential(
        identity="dev-00000003:dm", device_id="dev-00000003", purpose="dm", key=PSK
    )
    uri = f"coaps://127.0.0.1:{running.port}/rd?ep=dev-00000003"
    coap_client(running.port, "-m", "post", "-e", "</3/0>", uri,
                identity="dev-00000003:dm", key=b"wrong-key-000000")  # fmt: skip
    assert backend.registrations == []
