"""Build TrustFleet's two distributions, their SBOMs and SHA256SUMS, reproducibly.

Usage (with the development venv's python)::

    python packaging/build.py [--out DIR] [--json]
    python packaging/build.py requirements agent|server

writes into DIR (default dist/) ``trustfleet_agent-<V>-py3-none-any.whl``,
``trustfleet-<V>-py3-none-any.whl``, ``trustfleet_agent-<V>.cdx.json``, ``trustfleet-<V>.cdx.json``
and ``SHA256SUMS``. Same sources and SOURCE_DATE_EPOCH, same bytes (ADR 0020). Errors are one
line on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _dists import (
    ROOT,
    BuildError,
    Dist,
    load_dists,
    project_version,
    select_files,
    source_date_epoch,
    source_files,
)
from _wheel import WheelSpec, build_wheel, normalized_name, wheel_filename

__all__ = ["build", "main", "requirement_lines"]


def requirement_lines(dist: Dist, version: str) -> list[str]:
    """A distribution's PEP 508 requirements (the server's names the agent at this version)."""
    lines = list(dist.requires)
    if dist.requires_agent:
        lines.append(f"trustfleet-agent=={version}")
    return lines


def _write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _spec(dist: Dist, version: str, src: Path, files: list[str], root: Path) -> WheelSpec:
    try:
        description = (root / "packaging" / dist.readme).read_text(encoding="utf-8")
        contents = tuple((f, (src / f).read_bytes()) for f in files)
    except OSError as exc:
        raise BuildError(f"cannot read a file of {dist.name}: {exc}") from exc
    return WheelSpec(
        name=dist.name,
        version=version,
        summary=dist.summary,
        description=description,
        requires=tuple(requirement_lines(dist, version)),
        scripts=dist.scripts,
        files=contents,
    )


def build(out: Path, *, root: Path = ROOT) -> dict[str, object]:
    """Build everything into ``out``; return what was written (names, digests, sizes)."""
    from _sbom import LocalDist, render_sbom  # cyclonedx only when building

    dists, version, epoch = load_dists(root), project_version(root), source_date_epoch(root)
    src = root / "src"
    split = select_files(dists, source_files(src))
    outputs: dict[str, bytes] = {}
    agent = dists["agent"]
    local = {agent.name: LocalDist(agent.name, version, tuple(agent.requires))}
    for key in ("agent", "server"):
        dist = dists[key]
        wheel = build_wheel(_spec(dist, version, src, split[key], root), epoch=epoch)
        outputs[wheel_filename(dist.name, version)] = wheel
        outputs[f"{normalized_name(dist.name)}-{version}.cdx.json"] = render_sbom(
            name=dist.name,
            version=version,
            summary=dist.summary,
            wheel_sha256=hashlib.sha256(wheel).hexdigest(),
            requires=requirement_lines(dist, version),
            epoch=epoch,
            local=local if dist.requires_agent else {},
        )
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in outputs.items()}
    outputs["SHA256SUMS"] = "".join(f"{digests[n]}  {n}\n" for n in sorted(digests)).encode()
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, data in sorted(outputs.items()):
            _write(out / name, data)
    except OSError as exc:
        raise BuildError(f"cannot write into {out}: {exc}") from exc
    files = [
        {"name": n, "sha256": hashlib.sha256(d).hexdigest(), "size": len(d)}
        for n, d in sorted(outputs.items())
    ]
    return {"version": version, "source_date_epoch": epoch, "out": str(out), "files": files}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="packaging/build.py", description=__doc__.split("\n")[0])
    parser.add_argument("what", nargs="*", help="'requirements agent|server' to print those")
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the builder; return the exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.what:
            if len(args.what) != 2 or args.what[0] != "requirements":
                raise BuildError("usage: build.py requirements agent|server")
            dists = load_dists()
            if args.what[1] not in dists:
                raise BuildError(f"unknown distribution {args.what[1]!r} (agent or server)")
            print("\n".join(requirement_lines(dists[args.what[1]], project_version())))
            return 0
        result = build(args.out)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        for entry in result["files"]:  # type: ignore[attr-defined]
            print(f"{entry['sha256']}  {entry['size']:>9}  {args.out / entry['name']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
