"""Release attestations: SBOM generation and checking, provenance and release-chain verification.

Pure code, no processes: what ``release build`` computes (the image's CycloneDX 1.6 SBOM, the
signed provenance envelope) and what an auditor and a device verify (``check_sbom`` of the
largest SBOM the default settings accept, ``check_provenance``, ``verify_release_chain``). The
signing key is a P-256 key in memory (the product's is in a token; its signing time is the
token's, see the TUF benchmarks), so the figures are the attestation code's own. Medians of
``--reps`` runs.

    .venv/bin/python benchmarks/release_attest.py [--components 50000] [--reps 5] [--json]
"""

from __future__ import annotations

import hashlib
import json
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from _procs import benchmark_parser, cpu_model, emit, figures_table, report_console
from cryptography.hazmat.primitives.asymmetric import ec
from securesystemslib.signer import CryptoSigner

from support.attestkit import LIMITS, release_files  # the tests' release kit
from trustfleet.ota.release_verify import (
    ReleaseVerdict,
    VerifyLimits,
    check_provenance,
    verify_release_chain,
)
from trustfleet.ota.sbom import Component, check_sbom, cyclonedx_for_image

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def _median_ms(action: Callable[[], object], reps: int) -> float:
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def _spdx(packages: int) -> bytes:
    doc = {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": "bench",
        "documentNamespace": "https://example.com/spdx/bench",
        "creationInfo": {"created": "2026-12-03T12:00:00Z", "creators": ["Tool: bench"]},
        "packages": [
            {"SPDXID": f"SPDXRef-P{i}", "name": f"p{i}", "downloadLocation": "NOASSERTION"}
            for i in range(packages)
        ],
    }
    return json.dumps(doc).encode()


def measure(components: int, reps: int) -> dict[str, Any]:
    """The figures (milliseconds, bytes) for SBOMs of ``components`` entries."""
    parts = [
        Component(name=f"c{i}", version="1.0", purl=f"pkg:generic/c{i}@1.0", sha256=f"{i:064x}")
        for i in range(components)
    ]
    image_sha = hashlib.sha256(b"image").hexdigest()

    def make_sbom() -> bytes:
        return cyclonedx_for_image(
            model="bench",
            version="1.0.0",
            image_sha256=image_sha,
            image_length=5,
            components=parts,
            timestamp=NOW,
            product_version="bench",
        )

    sbom, spdx = make_sbom(), _spdx(components)
    bound = 64 << 20
    signer = CryptoSigner(ec.generate_private_key(ec.SECP256R1()))
    keys = {signer.public_key.keyid: signer.public_key}
    release = release_files(signer, components=components)
    envelope = release.files["m/1.0.0/provenance.dsse.json"]
    limits = VerifyLimits(
        max_manifest_bytes=LIMITS.max_manifest_bytes,
        max_sbom_bytes=bound,
        max_sbom_components=components,
        max_provenance_bytes=LIMITS.max_provenance_bytes,
    )
    digest = hashlib.sha256(release.image).hexdigest()

    def verify() -> ReleaseVerdict:
        return verify_release_chain(
            model="m",
            version="1.0.0",
            targets=release.targets,
            files=release.files,
            release_keys=keys,
            limits=limits,
        )

    verdict = verify()
    assert verdict.ok, verdict.findings
    return {
        "components": components,
        "reps": reps,
        "cyclonedx_bytes": len(sbom),
        "spdx_bytes": len(spdx),
        "envelope_bytes": len(envelope),
        "cyclonedx_for_image_ms": _median_ms(make_sbom, reps),
        "check_sbom_cyclonedx_ms": _median_ms(
            lambda: check_sbom(sbom, max_bytes=bound, max_components=components), reps
        ),
        "check_sbom_spdx_ms": _median_ms(
            lambda: check_sbom(spdx, max_bytes=bound, max_components=components), reps
        ),
        "check_provenance_ms": _median_ms(
            lambda: check_provenance(
                envelope, image_sha256=digest, keys=keys, max_bytes=LIMITS.max_provenance_bytes
            ),
            max(reps, 50),
        ),
        "verify_release_chain_ms": _median_ms(verify, reps),
    }


def _show(doc: dict[str, Any]) -> None:
    console = report_console(
        "Release attestations",
        f"{doc['components']} components, median of {doc['reps']} runs, {doc['machine']}",
    )
    table = figures_table(["what", "figure"], left={"what"})
    for key, value in doc.items():
        if key.endswith("_ms"):
            table.add_row(key.removesuffix("_ms"), f"{value:.2f} ms")
        elif key.endswith("_bytes"):
            table.add_row(key.removesuffix("_bytes") + " size", f"{value:,} bytes")
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    ap = benchmark_parser(__doc__)
    ap.add_argument("--components", type=int, default=50_000, help="SBOM entries (default 50000)")
    ap.add_argument("--reps", type=int, default=5, help="runs per figure (default 5)")
    args = ap.parse_args(argv)
    if not 1 <= args.components <= 1_000_000 or not 1 <= args.reps <= 100:
        ap.error("--components must be 1-1000000 and --reps 1-100")
    doc = measure(args.components, args.reps)
    doc["machine"] = f"{cpu_model() or platform.machine()}, Python {platform.python_version()}"
    emit(doc, as_json=args.json, show=_show)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
