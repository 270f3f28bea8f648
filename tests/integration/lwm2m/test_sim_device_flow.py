"""The simulated LwM2M device against the DTLS server of this package and a scripted LwM2M peer.

The peer plays the bootstrap server (Delete /0, Write /0 and /1 in TLV, Bootstrap-Finish) and
the device-management server (Register, an Observe of /3303/0, De-register). It checks the
device's side of the flow and the DTLS client against the DTLS server; the full flow with the
real LwM2M server is tests/integration/lwm2m/test_sim_device.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from support import aio
from trustfleet.configfile.device import DeviceSettings, save_device_settings
from trustfleet.keystore import find_module, init_token, write_pin_file, write_softhsm_conf
from trustfleet.lwm2m import PeerIdentity
from trustfleet.lwm2m.coap import Block, Code, Message, MessageType, Option, decode, encode, request
from trustfleet.lwm2m.dtls import DtlsServer, DtlsServerConfig
from trustfleet.lwm2m.manifest import Manifest, sign_manifest
from trustfleet.sim._lwm2m_token import device_token
from trustfleet.sim.lwm2m_device import main, run_device

DEVICE = "dev-00000001"
BOOTSTRAP_PSK = bytes.fromhex("0f" * 16)
DM_PSK = bytes.fromhex("a5" * 16)
PIN = "1234-device"


def _tlv(kind: int, ident: int, value: bytes) -> bytes:
    if len(value) > 7:
        return bytes([(kind << 6) | 0x08, ident, len(value)]) + value
    return bytes([(kind << 6) | len(value), ident]) + value


@dataclass
class ScriptedPeer:
    """Bootstrap + DM server over one DtlsServer; records what the device did."""

    dm_uri: str = ""
    server: DtlsServer | None = None
    seen: list[str] = field(default_factory=list)
    answers: asyncio.Queue[tuple[PeerIdentity, Message]] = field(default_factory=asyncio.Queue)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    observed: list[Message] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    firmware_uri: str = ""
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    versions: list[str] = field(default_factory=list)

    def on_record(self, peer: PeerIdentity, data: bytes) -> None:
        message = decode(data)
        if not message.is_request:
            self.answers.put_nowait((peer, message))
            return
        path = "/" + "/".join(message.uri_path())
        self.seen.append(f"{peer.identity} {Code(message.code).name} {path}")
        assert self.server is not None
        if path == "/bs":
            self.server.send(peer.address, encode(_ack(message, Code.CHANGED)))
            self.tasks.append(asyncio.ensure_future(self._bootstrap(peer)))
        elif path == "/rd":
            reply = _ack(
                message,
                Code.CREATED,
                options=((Option.LOCATION_PATH, b"rd"), (Option.LOCATION_PATH, b"7")),
            )
            self.server.send(peer.address, encode(reply))
            scenario = self._firmware(peer) if self.firmware_uri else self._observe(peer)
            self.tasks.append(asyncio.ensure_future(scenario))
        elif path in self.files and message.code == Code.GET:
            self.server.send(peer.address, encode(_block(message, self.files[path])))
        elif path == "/rd/7" and message.code == Code.DELETE:
            self.server.send(peer.address, encode(_ack(message, Code.DELETED)))
        else:
            self.server.send(peer.address, encode(_ack(message, Code.CHANGED)))

    async def _call(self, peer: PeerIdentity, message: Message) -> Message:
        assert self.server is not None
        self.server.send(peer.address, encode(message))
        while True:
            _, answer = await asyncio.wait_for(self.answers.get(), 10)
            if answer.message_id == message.message_id:
                return answer

    async def _bootstrap(self, peer: PeerIdentity) -> None:
        security = (
            _tlv(3, 0, self.dm_uri.encode())
            + _tlv(3, 1, b"\x00")
            + _tlv(3, 2, b"\x00")
            + _tlv(3, 3, f"{DEVICE}:dm".encode())
            + _tlv(3, 5, DM_PSK)
            + _tlv(3, 10, b"\x01")
        )
        server = _tlv(3, 0, b"\x01") + _tlv(3, 1, b"\x01\x2c") + _tlv(3, 7, b"U")
        steps = [
            request(Code.DELETE, path="/0", message_id=101, token=b"b1"),
            request(
                Code.PUT,
                path="/0",
                message_id=102,
                token=b"b2",
                payload=_tlv(0, 1, security),
                content_format=11542,
            ),
            request(
                Code.PUT,
                path="/1",
                message_id=103,
                token=b"b3",
                payload=_tlv(0, 0, server),
                content_format=11542,
            ),
            request(Code.POST, path="/bs", message_id=104, token=b"b4"),
        ]
        for step in steps:
            answer = await self._call(peer, step)
            self.seen.append(f"bs-answer {answer.code}")

    async def _observe(self, peer: PeerIdentity) -> None:
        message = request(
            Code.GET, path="/3303/0", message_id=201, token=b"ob", options=((Option.OBSERVE, b""),)
        )
        self.observed.append(await self._call(peer, message))

    async def _firmware(self, peer: PeerIdentity) -> None:
        uri = self.firmware_uri.encode()
        write = request(
            Code.PUT, path="/5/0/1", message_id=301, token=b"f1", payload=uri, content_format=0
        )
        self.versions.append(f"write {(await self._call(peer, write)).code}")
        for attempt in range(200):
            state = await self._call(
                peer, request(Code.GET, path="/5/0/3", message_id=400 + attempt, token=b"f2")
            )
            if state.payload != b"1":
                break
            await asyncio.sleep(0.05)
        self.versions.append(f"state {state.payload.decode()}")
        if state.payload == b"2":
            execute = request(Code.POST, path="/5/0/2", message_id=302, token=b"f3")
            self.versions.append(f"execute {(await self._call(peer, execute)).code}")
        for mid in (303, 304):
            answer = await self._call(
                peer,
                request(
                    Code.GET,
                    path=f"/{5 if mid == 303 else 3}/0/{5 if mid == 303 else 3}",
                    message_id=mid,
                    token=b"f4",
                ),
            )
            self.versions.append(answer.payload.decode())
        self.stop.set()


def _block(message: Message, content: bytes) -> Message:
    block = message.block2() or Block(num=0, more=False, szx=2)
    size = block.size
    chunk = content[block.num * size : (block.num + 1) * size]
    more = (block.num + 1) * size < len(content)
    option = (Option.BLOCK2, Block(num=block.num, more=more, szx=block.szx).encode())
    return Message(
        type=MessageType.ACK,
        code=Code.CONTENT,
        message_id=message.message_id,
        token=message.token,
        options=(option,),
        payload=chunk,
    )


def _ack(message: Message, code: int, *, options: tuple[tuple[int, bytes], ...] = ()) -> Message:
    return Message(
        type=MessageType.ACK,
        code=code,
        message_id=message.message_id,
        token=message.token,
        options=options,
    )


def _device_folder(root: Path, port: int) -> Path:
    module = find_module()
    conf = write_softhsm_conf(root / "softhsm2.conf", token_dir=root / "tokens")
    init_token(module=module, conf=conf, label="dev", so_pin="so-pin-1234", user_pin=PIN)
    write_pin_file(root / "pin", PIN)
    settings = DeviceSettings(
        directory=root,
        device={"id": DEVICE, "model": "sim-v1"},
        identity={
            "key": "pkcs11:token=dev;object=identity;type=private?pin-source=file:pin",
            "module": str(module),
        },
        server={"est_url": "https://127.0.0.1:8443/.well-known/est"},
        lwm2m={
            "security": "psk",
            "server_uri": f"coaps://127.0.0.1:{port}",
            "psk_identity": DEVICE,
            "lifetime_s": 60,
        },
    )
    save_device_settings(settings)
    device_token(settings).store_psk("lwm2m-psk", BOOTSTRAP_PSK)
    return root


def test_bootstrap_register_observe_deregister(tmp_path: Path) -> None:
    async def run() -> tuple[ScriptedPeer, dict[str, object]]:
        peer = ScriptedPeer()
        keys = {DEVICE: BOOTSTRAP_PSK, f"{DEVICE}:dm": DM_PSK}
        config = DtlsServerConfig(
            host="127.0.0.1",
            port=0,
            modes=("psk",),
            ciphers=("PSK-AES128-CCM8", "PSK-AES128-GCM-SHA256"),
        )
        server = DtlsServer(config, psk_lookup=keys.get, on_record=peer.on_record)
        peer.server = server
        _, port = await server.start()
        peer.dm_uri = f"coaps://127.0.0.1:{port}"
        try:
            folder = await asyncio.to_thread(_device_folder, tmp_path, port)
            result = await run_device(folder, once=True)
        finally:
            for task in peer.tasks:
                task.cancel()
            await server.close()
        return peer, json.loads(json.dumps(result.__dict__ if hasattr(result, "__dict__") else {}))

    peer, _ = aio.run(run())
    assert peer.seen[0] == f"{DEVICE} POST /bs"
    assert peer.seen[1:5] == ["bs-answer 66", "bs-answer 68", "bs-answer 68", "bs-answer 68"]
    assert f"{DEVICE}:dm POST /rd" in peer.seen
    assert peer.seen[-1] == f"{DEVICE}:dm DELETE /rd/7"
    assert peer.observed and peer.observed[0].code == Code.CONTENT
    assert b"Cel" in peer.observed[0].payload
    state = json.loads((tmp_path / "lwm2m-firmware" / "state.json").read_text())
    assert state["dm_identity"] == f"{DEVICE}:dm" and "a5a5" not in json.dumps(state)


def test_device_without_server_fails_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _device_folder(tmp_path, 9)  # nothing listens on UDP 9 here
    assert aio.in_thread(main, ["--device", str(folder), "--once"]) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "UDP" in error and "Traceback" not in error


def _signed(key: ec.EllipticCurvePrivateKey, image: bytes, *, version: str, sequence: int) -> bytes:
    manifest = Manifest(
        model="sim-v1",
        version=version,
        sequence=sequence,
        image_path="/fw/img",
        image_size=len(image),
        image_sha256=hashlib.sha256(image).hexdigest(),
    )
    return sign_manifest(
        manifest,
        sign=lambda data: key.sign(data, ec.ECDSA(hashes.SHA256())),
        algorithm="ES256",
        key_id=b"k1",
    )


FIRMWARE_CASES = [
    ("good", True, None, ["write 68", "state 2", "execute 68", "1", "2.0.0"]),
    ("tampered-image", True, b"x", ["write 68", "state 0", "5", "1.0.0"]),
    ("untrusted-signer", False, None, ["write 68", "state 0", "6", "1.0.0"]),
]


@pytest.mark.parametrize(
    ("trusted", "tamper", "expected"),
    [case[1:] for case in FIRMWARE_CASES],
    ids=[case[0] for case in FIRMWARE_CASES],
)
def test_firmware_pull_and_update(
    tmp_path: Path, trusted: bool, tamper: bytes | None, expected: list[str]
) -> None:
    signer = ec.generate_private_key(ec.SECP256R1())
    trusted_key = signer if trusted else ec.generate_private_key(ec.SECP256R1())
    image = bytes(range(256)) * 20  # 5 KiB: several 1 KiB Block2 blocks
    manifest = _signed(signer, image, version="2.0.0", sequence=1)

    async def run() -> tuple[ScriptedPeer, dict[str, object]]:
        peer = ScriptedPeer()
        peer.files = {"/fw/m": manifest, "/fw/img": image + (tamper or b"")}
        keys = {DEVICE: BOOTSTRAP_PSK, f"{DEVICE}:dm": DM_PSK}
        config = DtlsServerConfig(
            host="127.0.0.1", port=0, modes=("psk",), ciphers=("PSK-AES128-GCM-SHA256",)
        )
        server = DtlsServer(config, psk_lookup=keys.get, on_record=peer.on_record)
        peer.server = server
        _, port = await server.start()
        peer.dm_uri = peer.firmware_uri = f"coaps://127.0.0.1:{port}"
        peer.firmware_uri += "/fw/m"
        try:
            folder = await asyncio.to_thread(_device_folder, tmp_path, port)
            (folder / "lwm2m-manifest-key.pem").write_bytes(
                trusted_key.public_key().public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            )
            result = await asyncio.wait_for(run_device(folder, once=False, stop=peer.stop), 60)
        finally:
            for task in peer.tasks:
                task.cancel()
            await server.close()
        return peer, dataclasses.asdict(result)

    peer, result = aio.run(run())
    assert peer.versions == expected
    assert result["firmware_version"] == expected[-1]
    assert peer.seen[-1] == f"{DEVICE}:dm DELETE /rd/7"
