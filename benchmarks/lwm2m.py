"""LwM2M over DTLS: handshakes per second (ours and OpenSSL's), registrations held, notifications.

What runs (all on 127.0.0.1, in a temporary directory removed at the end):

1. Handshakes. The same client — ``trustfleet.lwm2m.dtls_client.DtlsClient`` (the system libssl)
   — makes ``--handshakes`` sequential PSK handshakes (connect, close_notify) against
   (a) our ``DtlsServer`` alone in a child process (PSK lookup from a dict, no store) and
   (b) ``openssl s_server -dtls1_2 -psk`` (it serves one session at a time, hence sequential).
   The ratio ours / OpenSSL is the cost of the Python event loop and memory BIOs over C.
2. Registrations and notifications. A server home with ``[lwm2m] enabled`` runs ``server run``;
   ``factory provision --protocol lwm2m --security psk --no-bootstrap`` makes ``--devices``
   devices; each client reads its PSK from the device token, handshakes, registers
   (``POST /rd`` with ``</3303/0>``), answers the server's Observe of ``/3303/0`` and then sends
   a NON notification every ``--period`` seconds for ``--seconds``. Reported: registrations the
   store holds, and telemetry rows stored per second (the server's rate bound per device is
   raised so that it does not cap the figure).

Usage::

    .venv/bin/python benchmarks/lwm2m.py [--handshakes N] [--devices N] [--seconds S] [--json]
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _procs import (
    TRUSTFLEET,
    benchmark_parser,
    cell,
    cpu_model,
    drop_workdir,
    emit,
    figures_table,
    interrupts_and_deadline,
    progress,
    report_console,
)

from support.dtls_peers import OpensslDtlsServer, read_token_secret
from support.wakaama import free_udp_port
from trustfleet.sim.process import ManagedProcess, wait_until

CIPHER = "PSK-AES128-GCM-SHA256"
IDENTITY = "bench-psk-0001"
MAX_TIME_S = 1800.0
READY_S = 60.0
RECV_S = 10.0


# -- 1. handshakes ---------------------------------------------------------------------------


def dtls_server_main(port_file: str, identity: str, key_hex: str) -> int:
    """Child process: our DtlsServer alone, PSK from memory; writes its port, runs until killed."""
    from trustfleet.lwm2m.dtls import DtlsServer, DtlsServerConfig
    from trustfleet.settings.lwm2m import Lwm2mSettings

    bounds = Lwm2mSettings()
    config = DtlsServerConfig(
        host="127.0.0.1", port=0, modes=("psk",), ciphers=(CIPHER,),
        cert_chain=None, key_file=None, ca_file=None, ca_path=None, crl_file=None,
        max_peers=bounds.max_peers, max_handshakes=bounds.max_handshakes,
        handshake_timeout_s=bounds.handshake_timeout_s, idle_timeout_s=bounds.idle_timeout_s,
        max_datagram_bytes=bounds.max_datagram_bytes,
        max_peer_buffer_bytes=bounds.max_peer_buffer_bytes,
        cookie_secret_ttl_s=bounds.cookie_secret_ttl_s,
    )  # fmt: skip
    keys = {identity: bytes.fromhex(key_hex)}

    async def serve() -> None:
        server = DtlsServer(config, psk_lookup=keys.get, on_record=lambda _peer, _data: None)
        _host, port = await server.start()
        Path(port_file).write_text(str(port))
        await asyncio.Event().wait()

    asyncio.run(serve())
    return 0


async def _handshakes(port: int, *, count: int, identity: str, key: bytes) -> list[float]:
    from trustfleet.lwm2m.dtls_client import DtlsClient, DtlsClientConfig

    times = []
    for _ in range(count):
        client = DtlsClient(
            DtlsClientConfig(
                host="127.0.0.1", port=port, ciphers=(CIPHER,), psk_identity=identity,
                psk_key=key,
            )
        )  # fmt: skip
        start = time.perf_counter()
        await client.connect()
        times.append(time.perf_counter() - start)
        await client.close()
    return times


def _figures(times: list[float]) -> dict[str, Any]:
    total = sum(times)
    return {
        "handshakes": len(times),
        "per_s": len(times) / total if total else None,
        "median_ms": statistics.median(times) * 1000,
        "p95_ms": sorted(times)[int(0.95 * (len(times) - 1))] * 1000,
    }


def handshake_figures(tmp: Path, *, count: int, log: Any) -> dict[str, Any]:
    key = secrets.token_bytes(16)
    port_file = tmp / "dtls.port"
    ours = ManagedProcess(
        [sys.executable, __file__, "_dtls_server", port_file, IDENTITY, key.hex()],
        log=tmp / "dtls-server.log", ready=port_file.is_file, name="DtlsServer",
    ).start(timeout_s=READY_S)  # fmt: skip
    try:
        log(f"{count} handshakes against our DtlsServer")
        mine = asyncio.run(
            _handshakes(int(port_file.read_text()), count=count, identity=IDENTITY, key=key)
        )
    finally:
        ours.stop()
    port = free_udp_port()
    args = ["-nocert", "-psk", key.hex(), "-psk_identity", IDENTITY, "-cipher", CIPHER]
    with OpensslDtlsServer(port, log=tmp / "s_server.log", args=args, state=False):
        log(f"{count} handshakes against openssl s_server -dtls1_2")
        theirs = asyncio.run(_handshakes(port, count=count, identity=IDENTITY, key=key))
    a, b = _figures(mine), _figures(theirs)
    ratio = a["per_s"] / b["per_s"] if a["per_s"] and b["per_s"] else None
    return {"ours": a, "openssl": b, "ratio": ratio}


# -- 2. registrations and notifications ------------------------------------------------------


def _cli(home: Path, *args: str) -> Any:
    done = subprocess.run(
        [str(TRUSTFLEET), *args, "--home", str(home), "--json"],
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    return json.loads(done.stdout)


async def _device(
    port: int, directory: Path, *, seconds: float, period_s: float, registered: list[str]
) -> int:
    """One device: handshake, register, answer the Observe, notify; its notifications sent."""
    from trustfleet.configfile.device import load_device_settings
    from trustfleet.lwm2m import coap
    from trustfleet.lwm2m.dtls_client import DtlsClient, DtlsClientConfig

    settings = load_device_settings(directory)
    section = settings.lwm2m
    assert section is not None
    pin = (directory / "secrets" / "token.pin").read_text().strip()
    key = read_token_secret(
        softhsm_conf=directory / "softhsm2.conf", pin=pin, label=section.psk_label
    )
    client = DtlsClient(
        DtlsClientConfig(
            host="127.0.0.1", port=port, ciphers=(CIPHER, "PSK-AES128-CCM8", "@SECLEVEL=0"),
            psk_identity=section.psk_identity, psk_key=key,
        )
    )  # fmt: skip
    await client.connect()
    mid = secrets.randbelow(0xFFFF)
    query = (f"ep={settings.device.id}", "lt=300", "lwm2m=1.1", "b=U")
    options = [(coap.Option.URI_PATH, b"rd")]
    options += [(coap.Option.URI_QUERY, q.encode()) for q in query]
    options.append((coap.Option.CONTENT_FORMAT, coap.option_uint(40)))
    register = coap.Message(
        type=coap.MessageType.CON, code=coap.Code.POST, message_id=mid, token=b"rg",
        options=tuple(options), payload=b"</3303/0>",
    )  # fmt: skip
    await client.send(coap.encode(register))
    token = b""
    sent = 0
    while not token:  # the 2.01, then the server's Observe GET of /3303/0
        message = coap.decode(await client.recv(timeout_s=RECV_S))
        if message.token == b"rg" and message.code == coap.Code.CREATED:
            registered.append(settings.device.id)
        elif message.code == coap.Code.GET and message.observe() == 0:
            token = message.token
            first = _reading(message, observe=0, mid=message.message_id, ack=True, value=20.0)
            await client.send(coap.encode(first))
        elif message.type == coap.MessageType.CON and message.is_request:
            # Anything else the server asks first (its read of /3/0): "not here", at once, so
            # that it goes on to the Observe instead of retransmitting.
            await client.send(coap.encode(coap.response_to(message, coap.Code.NOT_FOUND)))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await asyncio.sleep(period_s)
        sent += 1
        mid = (mid + 1) & 0xFFFF
        note = _reading(None, observe=sent, mid=mid, ack=False, value=20.0 + sent % 10, tok=token)
        await client.send(coap.encode(note))
    await client.close()
    return sent


def _reading(
    request: Any, *, observe: int, mid: int, ack: bool, value: float, tok: bytes = b""
) -> Any:
    from trustfleet.lwm2m import coap

    body = json.dumps([{"bn": "/3303/0/", "n": "5700", "v": value, "u": "Cel"}]).encode()
    return coap.Message(
        type=coap.MessageType.ACK if ack else coap.MessageType.NON,
        code=coap.Code.CONTENT, message_id=mid,
        token=request.token if request is not None else tok,
        options=((coap.Option.OBSERVE, coap.option_uint(observe)),
                 (coap.Option.CONTENT_FORMAT, coap.option_uint(110))),
        payload=body,
    )  # fmt: skip


def fleet_figures(
    tmp: Path, *, devices: int, seconds: float, period_s: float, log: Any
) -> dict[str, Any]:
    from trustfleet.settings import update_server_settings
    from trustfleet.sim.server import SimServer

    port = free_udp_port()
    log("server home with [lwm2m] enabled")
    sim = SimServer.create(tmp / "home", now=datetime.now(UTC), log=tmp / "server.log")
    update_server_settings(sim.home, {"lwm2m": {
        "enabled": True, "port": port, "observe": ["/3303"],
        "max_notifications_per_s": 10_000.0,
    }})  # fmt: skip
    log(f"factory provision of {devices} LwM2M devices")
    made = _cli(sim.home, "factory", "provision", "--out", str(tmp / "devices"),
                "--count", str(devices), "--protocol", "lwm2m", "--security", "psk",
                "--no-bootstrap")  # fmt: skip
    folders = [Path(row["directory"]) for row in made["devices"]]
    sim.start(timeout_s=READY_S)
    try:
        registered: list[str] = []

        async def all_devices() -> list[int]:
            return list(await asyncio.gather(*(
                _device(port, f, seconds=seconds, period_s=period_s, registered=registered)
                for f in folders
            )))  # fmt: skip

        rt = sim.runtime
        with rt.uow.begin(read_only=True) as tx:
            rows_before = tx.telemetry.count()
        log(f"{devices} devices register and notify for {seconds:.0f} s")
        start = time.monotonic()
        sent = asyncio.run(all_devices())
        elapsed = time.monotonic() - start

        def stored() -> int:
            with rt.uow.begin(read_only=True) as tx:
                return int(tx.telemetry.count()) - rows_before

        wait_until(lambda: stored() >= sum(sent) or None, timeout_s=30, what="rows stored")
        rows = stored()
    finally:
        sim.close_runtime()
        sim.stop()
    return {
        "devices": devices,
        "registrations_held": len(registered),
        "notifications_sent": sum(sent),
        "rows_stored": rows,
        "notifications_per_s": rows / elapsed if elapsed else None,
    }


# -- the run ---------------------------------------------------------------------------------


def print_table(doc: dict[str, Any]) -> None:
    console = report_console("LwM2M over DTLS", f"{doc['machine']['cpu']}, {doc['date']}")
    table = figures_table(["server", "handshakes/s", "median ms", "p95 ms"], left={"server"})
    hs = doc["handshakes"]
    for name in ("ours", "openssl"):
        f = hs[name]
        table.add_row(name, cell(f["per_s"], ".1f"), cell(f["median_ms"], ".2f"),
                      cell(f["p95_ms"], ".2f"))  # fmt: skip
    console.print(table)
    console.print(f"ratio ours/openssl: {cell(hs['ratio'], '.2f')}")
    fleet = doc.get("fleet")
    if fleet:
        console.print(
            f"registrations held: {fleet['registrations_held']}/{fleet['devices']}; "
            f"notifications stored per s: {cell(fleet['notifications_per_s'], '.1f')} "
            f"({fleet['rows_stored']} of {fleet['notifications_sent']} sent)"
        )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_dtls_server"]:
        return dtls_server_main(*argv[1:4])
    ap = benchmark_parser(__doc__, keep=True)
    ap.add_argument("--handshakes", type=int, default=200, help="per server (default 200)")
    ap.add_argument("--devices", type=int, default=20, help="LwM2M devices (default 20)")
    ap.add_argument("--seconds", type=float, default=10.0, help="notifying (default 10)")
    ap.add_argument("--period", type=float, default=0.1, help="between notifications (0.1 s)")
    ap.add_argument("--no-fleet", action="store_true", help="handshakes only")
    args = ap.parse_args(argv)
    if not 1 <= args.handshakes <= 10_000 or not 1 <= args.devices <= 2000:
        ap.error("--handshakes must be 1..10000 and --devices 1..2000")
    tmp = Path(tempfile.mkdtemp(prefix="tf-bench-lwm2m-"))
    log = progress(quiet=args.json)
    doc: dict[str, Any] = {
        "benchmark": "lwm2m",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"nproc": os.cpu_count(), "cpu": cpu_model()},
        "params": {"handshakes": args.handshakes, "devices": args.devices,
                   "seconds": args.seconds, "period_s": args.period, "cipher": CIPHER},
    }  # fmt: skip
    try:
        with interrupts_and_deadline(MAX_TIME_S):
            doc["handshakes"] = handshake_figures(tmp, count=args.handshakes, log=log)
            if not args.no_fleet:
                doc["fleet"] = fleet_figures(
                    tmp, devices=args.devices, seconds=args.seconds, period_s=args.period,
                    log=log,
                )  # fmt: skip
    except KeyboardInterrupt:
        print("interrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        drop_workdir(tmp, keep=args.keep)
    emit(doc, as_json=args.json, show=print_table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
