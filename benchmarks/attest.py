"""Attestation verifier throughput on one core, against the raw ECDSA P-256 verify floor.

What runs (one process, nothing on disk or network):

1. The tests' software device (tests/support/softdevice.py: a P-256 AK in ``cryptography``,
   SHA-256 PCRs computed in Python) boots with
   ``--events`` measurements (ROM, bootloader, image, agent, plus extra ROM/bootloader/agent
   events up to the count) and answers ``--distinct`` challenges: each a fresh nonce, its own
   ``TPMS_ATTEST`` marshalled as TPM2_Quote does, signed, with the event log, as the MQTT
   evidence payload of docs/attestation.md. The device's record holds a pre-loaded AK and a
   last-seen clock, so every check runs (signature, nonce, age, PCR selection, replay,
   reference values, counters and clock).
2. ``verify_evidence`` is called ``--rounds`` times, cycling through those payloads; every
   verdict must be ok. Each call is timed (p50/p99), and the process CPU time is measured.
3. In the same run, interleaved in blocks with step 2 so both see the same machine load,
   ``cryptography``'s bare ``EllipticCurvePublicKey.verify`` of the same AK's signature over
   one more of those quotes: the floor no verifier using it can beat.

Usage::

    .venv/bin/python benchmarks/attest.py [--rounds N] [--distinct K] [--events E] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from _procs import benchmark_parser, cell, cpu_model, emit, figures_table, progress, report_console
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from support.softdevice import EPOCH, MODEL, SoftDevice
from trustfleet.attestation import (
    AttestationPolicy,
    Challenge,
    ClockInfo,
    DeviceAttestationState,
    ModelReference,
    ReferenceSet,
    ReleaseReference,
    make_challenge,
    measure_identity,
    verify_evidence,
)

_BLOCK = 500
_MAX_ROUNDS = 10_000_000
_TARGET_PER_S = 5000
_KEYLIME_BEST_PER_S = 2500


@dataclass
class Workload:
    payloads: list[tuple[bytes, Challenge]]
    device: DeviceAttestationState
    references: ReferenceSet
    policy: AttestationPolicy
    now: datetime
    # for the raw floor
    ak: ec.EllipticCurvePublicKey
    attest: bytes
    der_signature: bytes
    evidence_bytes: int


def boot(device: SoftDevice, events: int) -> tuple[dict[str, set[bytes]], bytes]:
    """Measure a boot of ``events`` extends into ``device``; good digests per component; image's."""
    image = b"bench image 2.0.0\n" * 4096
    plan = [("rom", 0), ("bootloader", 4), ("image", 9), ("agent", 10)]
    extra = [("rom", 0), ("bootloader", 4), ("agent", 10)]
    plan += [extra[i % 3] for i in range(max(0, events - 4))]
    good: dict[str, set[bytes]] = {"rom": set(), "bootloader": set(), "agent": set()}
    for n, (component, pcr) in enumerate(plan):
        if component == "image":
            digest = hashlib.sha256(image).digest()
        else:
            digest = measure_identity(f"{MODEL}/{component}/{n}")
            good[component].add(digest)
        device.measure(pcr, component, digest)
    return good, hashlib.sha256(image).digest()


def reference_set(good: dict[str, set[bytes]], image_digest: bytes) -> ReferenceSet:
    """The model's stage digests and 21 releases (the booted one is 2.0.0)."""
    return ReferenceSet.build(
        models=[
            ModelReference(
                model=MODEL,
                rom=frozenset(good["rom"]),
                bootloader=frozenset(good["bootloader"]),
                agent=frozenset(good["agent"]),
            )
        ],
        releases=[
            ReleaseReference(model=MODEL, version=f"1.{i}.0", image_sha256=os.urandom(32))
            for i in range(20)
        ]
        + [ReleaseReference(model=MODEL, version="2.0.0", image_sha256=image_digest)],
    )


def build_workload(*, distinct: int, events: int) -> Workload:
    device = SoftDevice(device_id="dev-bench00000001", clock=5_000, reset_count=4)
    good, image_digest = boot(device, events)
    payloads = []
    for _ in range(distinct):
        challenge = make_challenge(now=EPOCH)
        payloads.append((device.evidence(challenge), challenge))
    attest, _ = device.quote(challenge.nonce)
    state = device.state(
        ak_qualified_name=device.ak_qualified_name,
        last_clock=ClockInfo(clock=5_000, reset_count=4, restart_count=0, safe=True),
        allowed_releases=frozenset({"1.19.0", "2.0.0"}),
    )
    return Workload(
        payloads=payloads,
        device=state,
        references=reference_set(good, image_digest),
        policy=AttestationPolicy(),
        now=EPOCH + timedelta(seconds=2),
        ak=device.ak.public_key(),
        attest=attest,
        der_signature=device.ak.sign(attest, ec.ECDSA(hashes.SHA256())),
        evidence_bytes=len(payloads[0][0]),
    )


def run(wl: Workload, rounds: int) -> dict[str, Any]:
    """Verifier and raw-verify calls in interleaved blocks; wall and CPU time of each."""
    latencies: list[int] = []
    failures = 0
    wall = {"verify": 0.0, "raw": 0.0}
    cpu = {"verify": 0.0, "raw": 0.0}
    algo = ec.ECDSA(hashes.SHA256())
    clock = time.perf_counter_ns
    done = 0
    k = len(wl.payloads)
    while done < rounds:
        block = min(_BLOCK, rounds - done)
        c0, w0 = time.process_time(), time.perf_counter()
        for i in range(done, done + block):
            payload, challenge = wl.payloads[i % k]
            t0 = clock()
            verdict = verify_evidence(
                payload,
                challenge=challenge,
                device=wl.device,
                references=wl.references,
                policy=wl.policy,
                now=wl.now,
            )
            latencies.append(clock() - t0)
            failures += not verdict.ok or bool(verdict.findings)
        c1, w1 = time.process_time(), time.perf_counter()
        for _ in range(block):
            wl.ak.verify(wl.der_signature, wl.attest, algo)
        c2, w2 = time.process_time(), time.perf_counter()
        wall["verify"] += w1 - w0
        wall["raw"] += w2 - w1
        cpu["verify"] += c1 - c0
        cpu["raw"] += c2 - c1
        done += block
    latencies.sort()
    return {
        "rounds": rounds,
        "failures": failures,
        "verify_per_s": rounds / wall["verify"],
        "verify_per_cpu_s": rounds / cpu["verify"] if cpu["verify"] else None,
        "raw_ecdsa_per_s": rounds / wall["raw"],
        "raw_ecdsa_per_cpu_s": rounds / cpu["raw"] if cpu["raw"] else None,
        "ratio": wall["raw"] / wall["verify"],
        "p50_us": latencies[len(latencies) // 2] / 1000,
        "p99_us": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] / 1000,
        "max_us": latencies[-1] / 1000,
    }


def machine() -> dict[str, Any]:
    cpu = cpu_model()
    import cryptography
    from cryptography.hazmat.backends.openssl.backend import backend

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "loadavg_1m": os.getloadavg()[0],
        "python": platform.python_version(),
        "cryptography": cryptography.__version__,
        "openssl": backend.openssl_version_text(),
    }


def print_rich(doc: dict[str, Any]) -> None:
    p, r, m = doc["params"], doc["result"], doc["machine"]
    console = report_console(
        "Attestation verifier benchmark",
        f"1 process, {p['rounds']} rounds over "
        f"{p['distinct']} distinct payloads, {p['events']} events, {doc['evidence_bytes']} B "
        f"evidence; {m['nproc']} cores ({m['cpu']}), load {m['loadavg_1m']:.2f}, "
        f"{m['openssl']}",
    )
    cols = ("run", "per s (wall)", "per CPU s", "p50 µs", "p99 µs", "max µs")
    table = figures_table(cols, left=("run",))
    table.add_row(
        "verify_evidence",
        f"{r['verify_per_s']:.0f}",
        cell(r["verify_per_cpu_s"], ".0f"),
        f"{r['p50_us']:.1f}",
        f"{r['p99_us']:.1f}",
        f"{r['max_us']:.1f}",
    )
    table.add_row(
        "raw ECDSA P-256 verify",
        f"{r['raw_ecdsa_per_s']:.0f}",
        cell(r["raw_ecdsa_per_cpu_s"], ".0f"),
        "-",
        "-",
        "-",
    )
    console.print(table)
    console.print(
        f"verify_evidence ÷ raw ECDSA verify = [bold]{r['ratio']:.1%}[/]; target "
        f"{_TARGET_PER_S}/s/core (Keylime's published best case: {_KEYLIME_BEST_PER_S}/s); "
        f"false failures: {r['failures']}"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = benchmark_parser(__doc__)
    ap.add_argument("--rounds", type=int, default=20_000, help="verifications (default 20000)")
    ap.add_argument(
        "--distinct", type=int, default=500, help="distinct evidence payloads (default 500)"
    )
    ap.add_argument("--events", type=int, default=6, help="event-log entries (4-64, default 6)")
    args = ap.parse_args(argv)
    if not 1 <= args.rounds <= _MAX_ROUNDS:
        ap.error(f"--rounds must be between 1 and {_MAX_ROUNDS}")
    if not 1 <= args.distinct <= 100_000:
        ap.error("--distinct must be between 1 and 100000")
    if not 4 <= args.events <= 64:
        ap.error("--events must be between 4 and 64 (the policy's bound)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log = progress(quiet=args.json)
    log(f"building {args.distinct} evidence payloads …")
    wl = build_workload(distinct=args.distinct, events=args.events)
    run(wl, min(args.rounds, 1000))  # warm-up
    log(f"verifying {args.rounds} times …")
    doc = {
        "benchmark": "attest",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "params": {"rounds": args.rounds, "distinct": args.distinct, "events": args.events},
        "evidence_bytes": wl.evidence_bytes,
        "result": run(wl, args.rounds),
    }
    emit(doc, as_json=args.json, show=print_rich)
    return 0 if doc["result"]["failures"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
