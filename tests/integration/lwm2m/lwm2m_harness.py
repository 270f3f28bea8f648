"""The LwM2M server on a background loop, a fake backend, and a small LwM2M test device.

The device is a pyOpenSSL DTLS client in certificate mode (``dtls_peers.PyDtlsClient``) that
speaks CoAP through ``trustfleet.lwm2m.coap``; it answers the server's requests from a table
of handlers. The fake backend implements the port in memory (the real one is tested by
helper 4's tests and at merge with the service).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from dtls_peers import PyDtlsClient, ThrowawayPki

from trustfleet.errors import PermissionDenied
from trustfleet.lwm2m.coap import Code, Message, MessageType, decode, encode, response_to
from trustfleet.lwm2m.dtls import DtlsServerConfig
from trustfleet.lwm2m.ports import (
    BootstrapPlan,
    Credential,
    DeviceAccess,
    FirmwareJob,
    PeerIdentity,
    Purpose,
    Reading,
    Registration,
)
from trustfleet.lwm2m.server import Lwm2mServer
from trustfleet.settings.lwm2m import Lwm2mSettings

T = TypeVar("T")
ECDSA_CIPHER = "ECDHE-ECDSA-AES128-CCM8:@SECLEVEL=0"


@dataclass
class FakeBackend:
    """The port in memory: who may do what, and everything recorded."""

    devices: dict[str, Purpose] = field(default_factory=dict)
    quarantined: set[str] = field(default_factory=set)
    revoked: set[str] = field(default_factory=set)
    changes: list[str] = field(default_factory=list)
    registrations: list[tuple[Registration, Registration | None]] = field(default_factory=list)
    deregistrations: list[tuple[str, str]] = field(default_factory=list)
    readings: list[tuple[str, Reading]] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    firmware_states: list[tuple[str, int, int]] = field(default_factory=list)
    jobs: dict[str, FirmwareJob] = field(default_factory=dict)
    psks: dict[str, Credential] = field(default_factory=dict)
    packages: dict[tuple[str, str], FirmwareJob] = field(default_factory=dict)

    def psk_credential(self, identity: str) -> Credential | None:
        return self.psks.get(identity)

    def admit(
        self, peer: PeerIdentity, *, endpoint: str, purpose: Purpose, now: datetime
    ) -> DeviceAccess:
        device = peer.identity
        if peer.mode == "psk":
            device = self.psks[peer.identity].device_id
        allowed = self.devices.get(device)
        if device in self.revoked or allowed is None:
            raise PermissionDenied("Unknown or revoked device.", code="lwm2m.unknown")
        if endpoint != device:
            raise PermissionDenied("Endpoint mismatch.", code="lwm2m.endpoint_mismatch")
        if purpose != allowed:
            raise PermissionDenied("Wrong credential purpose.", code="lwm2m.purpose")
        return DeviceAccess(
            device_id=device, model="m1", purpose=purpose, quarantined=device in self.quarantined,
        )  # fmt: skip

    def bootstrap_plan(self, access: DeviceAccess, *, now: datetime) -> BootstrapPlan:
        return BootstrapPlan(
            device_id=access.device_id, server_uri="coaps://127.0.0.1:5684", short_server_id=1,
            lifetime_s=300, binding="U", mode="psk", psk_identity=f"{access.device_id}:dm",
            psk_key=b"\x07" * 16,
        )  # fmt: skip

    def record_registration(
        self, registration: Registration, *, previous: Registration | None, now: datetime
    ) -> None:
        self.registrations.append((registration, previous))

    def record_deregistration(
        self,
        device_id: str,
        *,
        reason: Literal["deregistered", "expired", "revoked", "quarantined"],
        now: datetime,
    ) -> None:
        self.deregistrations.append((device_id, reason))

    def store_readings(self, device_id: str, readings: Sequence[Reading], *, now: datetime) -> int:
        self.readings += [(device_id, r) for r in readings]
        return len(readings)

    def record_refusal(
        self, *, address: str, code: str, identity: str | None, detail: str, now: datetime
    ) -> None:
        self.refusals.append(code)

    def firmware_job(self, device_id: str, *, now: datetime) -> FirmwareJob | None:
        return self.jobs.pop(device_id, None)

    def firmware_package(self, model: str, version: str) -> FirmwareJob | None:
        return self.packages.get((model, version))

    def record_firmware_state(
        self, device_id: str, *, version: str | None, state: int, result: int, now: datetime
    ) -> None:
        self.firmware_states.append((device_id, state, result))

    def access_changes(self, cursor: int) -> tuple[list[str], int]:
        return self.changes[cursor:], len(self.changes)


class Running:
    """An Lwm2mServer on its own event loop in a thread (the test drives blocking devices)."""

    def __init__(self, pki: ThrowawayPki, backend: FakeBackend, **settings: Any) -> None:
        cert, key, _ = pki.issue("lwm2m-server")
        dtls = DtlsServerConfig(
            host="127.0.0.1", port=0, modes=("psk", "cert"),
            ciphers=("ECDHE-ECDSA-AES128-CCM8", "PSK-AES128-CCM8"),
            cert_chain=cert, key_file=key, ca_file=pki.ca_file, crl_file=pki.crl_file,
        )  # fmt: skip
        defaults: dict[str, Any] = {
            "revocation_poll_s": 0.05, "firmware_check_s": 0.1, "ack_timeout_s": 0.5,
            "max_retransmit": 2, "observe": ["/3303"], "block_size": 64,
        }  # fmt: skip
        self.settings = Lwm2mSettings(**(defaults | settings))
        self.server = Lwm2mServer(self.settings, backend, dtls=dtls)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.port = self.call(self.server.start())[1]

    def call(self, coro: Coroutine[Any, Any, T], *, timeout_s: float = 20) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def close(self) -> None:
        try:
            self.call(self.server.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


Handler = Callable[[Message], Message | None]


class Device:
    """A minimal LwM2M client over DTLS (certificate mode): sends requests, answers the server's."""

    def __init__(self, pki: ThrowawayPki, port: int, name: str) -> None:
        cert, key, _ = pki.issue(name)
        self.name = name
        self.dtls = PyDtlsClient(port, cert=cert, key=key, ciphers=ECDSA_CIPHER)
        self.dtls.handshake()
        self.dtls.sock.settimeout(0.5)
        self.handlers: dict[str, Handler] = {}
        self.seen: list[Message] = []
        self._mid = 1000

    def mid(self) -> int:
        self._mid += 1
        return self._mid

    def send(self, message: Message) -> None:
        self.dtls.send(encode(message))

    def call(self, message: Message) -> Message:
        """Send a request and return its response, answering server requests meanwhile."""
        self.send(message)
        found: list[Message] = []
        self.pump(lambda m: m.token == message.token and m.code != 0 and found.append(m) is None)
        return found[0]

    def pump(self, done: Callable[[Message], bool], *, rounds: int = 60) -> None:
        """Receive until ``done(message)`` for a received message (server requests answered)."""
        for _ in range(rounds):
            try:
                message = decode(self.dtls.recv())
            except TimeoutError:
                continue
            if message.is_request:
                self.seen.append(message)
                self._answer(message)
            if done(message):
                return
        raise AssertionError("the expected message did not come")

    def _answer(self, request: Message) -> None:
        path = "/" + "/".join(request.uri_path())
        handler = self.handlers.get(f"{Code(request.code).name} {path}")
        response = handler(request) if handler else response_to(request, Code.NOT_FOUND)
        if response is not None:
            self.send(response)

    def notify(self, request: Message, *, observe: int, payload: bytes, fmt: int) -> None:
        from trustfleet.lwm2m.coap import Option, option_uint

        self.send(
            Message(
                type=MessageType.NON,
                code=Code.CONTENT,
                message_id=self.mid(),
                token=request.token,
                payload=payload,
                options=(
                    (Option.OBSERVE, option_uint(observe)),
                    (Option.CONTENT_FORMAT, option_uint(fmt)),
                ),
            )
        )

    def close(self) -> None:
        self.dtls.close()


def image(tmp: Path, size: int) -> Path:
    path = tmp / "image.bin"
    path.write_bytes(bytes(i % 251 for i in range(size)))
    return path
