"""The release pipeline with its SBOM and signed provenance, on a real home (SoftHSM2 tokens).

Makes a home with the harness (``SimServer.create``), then for each of ``--releases`` simulated
images of ``--size``: ``build_release`` (boot signature, the image's CycloneDX SBOM from its
component list, the provenance envelope signed by the TUF targets key in the token),
``publish_release`` (no deltas: ``[ota] delta_from_previous = 0``, so the figure is the
publish itself) and ``verify_published_release`` from the repository folder with the public TUF
root (python-tuf ngclient + the release-chain verifier). Medians over the releases.

    .venv/bin/python benchmarks/release_pipeline.py [--size 64MiB] [--releases 5] [--json]
"""

from __future__ import annotations

import platform
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _procs import benchmark_parser, cpu_model, emit, figures_table, report_console

from trustfleet.services.ota import build_release, publish_release
from trustfleet.services.release_verify import limits_of, verify_published_release
from trustfleet.sim.image import build_image, parse_size
from trustfleet.sim.server import SimServer

MODEL = "sim-v1"


def _release(rt: Any, root: bytes, image: Path, version: str) -> dict[str, Any]:
    """Build, publish and verify one release; its figures (seconds, sizes)."""
    now = datetime.now(UTC)
    start = time.perf_counter()
    manifest = build_release(rt, image=image, version=version, model=MODEL, min_version=None,
                             now=now)  # fmt: skip
    built = time.perf_counter()
    publish_release(rt, model=MODEL, version=version, now=now)
    published = time.perf_counter()
    verdict = verify_published_release(
        repo=rt.settings.path(rt.settings.ota.repo_dir), trusted_root=root, model=MODEL,
        version=version, limits=limits_of(rt.settings),
    )  # fmt: skip
    verified = time.perf_counter()
    assert verdict.ok, verdict.findings
    return {
        "build_s": built - start,
        "publish_s": published - built,
        "verify_s": verified - published,
        "components": manifest.sbom.components,
        "sbom_bytes": manifest.sbom.length,
        "envelope_bytes": manifest.provenance.length,
    }


def run(work: Path, *, size: int, releases: int) -> dict[str, Any]:
    """The figures of one run in ``work`` (times: medians over the releases)."""
    server = SimServer.create(
        work / "home", now=datetime.now(UTC), overrides={"ota": {"delta_from_previous": 0}}
    )
    root = (work / "home" / "public" / "tuf-root.json").read_bytes()
    runs = []
    try:
        for n in range(releases):
            version = f"1.{n}.0"
            image = build_image(work / f"{version}.bin", version=version, size_bytes=size).path
            runs.append(_release(server.runtime, root, image, version))
            image.unlink()
    finally:
        server.close_runtime()
    figures: dict[str, Any] = {"image_bytes": size, "releases": releases, **runs[-1]}
    for name in ("build_s", "publish_s", "verify_s"):
        figures[name] = statistics.median(r[name] for r in runs)
    return figures


def _show(doc: dict[str, Any]) -> None:
    console = report_console(
        "Release pipeline (SBOM + provenance)",
        f"{doc['releases']} releases of {doc['image_bytes'] >> 20} MiB, {doc['machine']}",
    )
    table = figures_table(["what", "figure"], left={"what"})
    for key, value in doc.items():
        if key.endswith("_s"):
            table.add_row(key.removesuffix("_s") + " (median)", f"{value * 1000:.0f} ms")
        elif key.endswith("_bytes") or key == "components":
            table.add_row(key.replace("_", " "), f"{value:,}")
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    ap = benchmark_parser(__doc__, keep=True)
    ap.add_argument("--size", default="64MiB", help="image size (default 64MiB)")
    ap.add_argument("--releases", type=int, default=5, help="releases to build (default 5)")
    args = ap.parse_args(argv)
    if not 1 <= args.releases <= 50:
        ap.error("--releases must be 1-50")
    work = Path(tempfile.mkdtemp(prefix="tf-bench-release-"))
    try:
        doc = run(work, size=parse_size(args.size), releases=args.releases)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    doc["machine"] = f"{cpu_model() or platform.machine()}, Python {platform.python_version()}"
    emit(doc, as_json=args.json, show=_show)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
