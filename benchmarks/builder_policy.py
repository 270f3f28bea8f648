"""Cost of the device builder policy: one provenance check per update, and its extra bytes.

What runs (pure, in this process): a release provenance like ``release build`` writes (in-toto
Statement v1, SLSA Provenance v1, ``--materials`` inputs) wrapped in a DSSE envelope signed by
an ECDSA P-256 key (the TUF targets key's algorithm), then the device's decision
``agent.updater._builders.provenance_refusal`` (parse, DSSE signature over PAE, statement,
subject, builder) timed as the median of ``--reps`` runs, for an allowed builder and for a
refused one. The envelope's size is what the policy adds to an update's download.

Usage::

    .venv/bin/python benchmarks/builder_policy.py [--reps N] [--materials M] [--json]
"""

from __future__ import annotations

import hashlib
import statistics
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from _procs import benchmark_parser, cpu_model, emit
from securesystemslib.signer import CryptoSigner  # type: ignore[attr-defined]

from trustfleet.agent.updater._builders import provenance_refusal
from trustfleet.ota.dsse import render_envelope, sign_envelope
from trustfleet.ota.manifest import (
    BootSignature,
    ImageRef,
    ProvenanceRef,
    ReleaseManifest,
    image_target,
    provenance_target,
)
from trustfleet.ota.provenance import BUILD_TYPE, Material, Provenance, render_statement

NOW = datetime(2026, 12, 1, tzinfo=UTC)
CI = "urn:example:builder:ci"


def _envelope(signer: CryptoSigner, image_sha256: str, materials: int) -> bytes:
    inputs = tuple(
        Material(uri=f"git+https://example.com/src/layer-{i}.git@refs/tags/v1", sha256="ab" * 32)
        for i in range(materials)
    )
    statement = Provenance(
        subject_name="image.bin",
        subject_sha256=image_sha256,
        builder_id=CI,
        build_type=BUILD_TYPE,
        parameters={"model": "sim-v1", "version": "1.2.0", "min_version": "0.0.1"},
        materials=inputs,
        invocation_id="urn:uuid:00000000-0000-0000-0000-000000000001",
        started_on=NOW,
        finished_on=NOW,
        builder_version="1.0.0",
    )
    return render_envelope(sign_envelope(render_statement(statement), signer=signer))


def _manifest(image_sha256: str, envelope: bytes) -> ReleaseManifest:
    return ReleaseManifest(
        model="sim-v1",
        version="1.2.0",
        min_version="0.0.1",
        created_at=NOW,
        image=ImageRef(target=image_target("sim-v1", "1.2.0"), length=1 << 20, sha256=image_sha256),
        boot=BootSignature(key_sha256="cd" * 32, signature=b"\x30" * 70),
        provenance=ProvenanceRef(
            target=provenance_target("sim-v1", "1.2.0"),
            length=len(envelope),
            sha256=hashlib.sha256(envelope).hexdigest(),
        ),
    )


def _median_ms(reps: int, check: Any) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        check()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1000, 3)


def measure(reps: int, materials: int) -> dict[str, Any]:
    """The figures: envelope size and the decision's median time, allowed and refused."""
    signer = CryptoSigner.generate_ecdsa()
    keys = {signer.public_key.keyid: signer.public_key}
    digest = hashlib.sha256(b"image").hexdigest()
    envelope = _envelope(signer, digest, materials)
    manifest = _manifest(digest, envelope)
    results = {}
    for name, allowed in (("allowed", (CI,)), ("refused", ("urn:example:builder:other",))):
        refusal = provenance_refusal(
            envelope, manifest=manifest, keys=keys, allowed_builders=allowed, max_bytes=256 << 10
        )
        assert (refusal is None) == (name == "allowed"), refusal
        results[f"{name}_ms"] = _median_ms(
            reps,
            lambda a=allowed: provenance_refusal(  # type: ignore[misc]
                envelope, manifest=manifest, keys=keys, allowed_builders=a, max_bytes=256 << 10
            ),
        )
    no_policy = replace(manifest, provenance=None)
    results["no_policy_ms"] = _median_ms(
        reps,
        lambda: provenance_refusal(
            None, manifest=no_policy, keys=keys, allowed_builders=(), max_bytes=256 << 10
        ),
    )
    return {
        "cpu": cpu_model(),
        "reps": reps,
        "materials": materials,
        "envelope_bytes": len(envelope),
        **results,
    }


def _show(doc: dict[str, Any]) -> None:
    print(f"builder policy, {doc['reps']} reps, {doc['materials']} materials ({doc['cpu']})")
    print(f"  provenance envelope: {doc['envelope_bytes']} bytes (the extra download)")
    print(f"  check, allowed builder: {doc['allowed_ms']} ms (median)")
    print(f"  check, refused builder: {doc['refused_ms']} ms (median)")
    print(f"  no policy: {doc['no_policy_ms']} ms (nothing fetched)")


def main() -> None:
    """Run and print the figures."""
    ap = benchmark_parser(__doc__)
    ap.add_argument("--reps", type=int, default=500)
    ap.add_argument("--materials", type=int, default=32)
    args = ap.parse_args()
    emit(measure(args.reps, args.materials), as_json=args.json, show=_show)


if __name__ == "__main__":
    main()
