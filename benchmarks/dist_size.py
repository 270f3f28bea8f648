"""The device distribution's installed footprint next to today's single distribution.

Builds the wheels (packaging/build.py), creates a fresh venv, installs the device wheel OFFLINE
from ``.venv/wheelhouse`` (made by scripts/bootstrap.sh; built here with ``pip wheel`` when it is
missing) and prints the device distribution's installed dependency list (name==version) and its
installed size; then "today's" figure: the closure of the old single distribution (every runtime
dependency of the root pyproject, resolved against the development venv) summed from the dev
venv's RECORD files, plus all of src/trustfleet. Sizes are the files each distribution's RECORD
lists, without bytecode caches (so both sides count the same thing); the fresh venv's
site-packages as ``du`` sees it (with caches, without pip/setuptools) is printed too.

    .venv/bin/python benchmarks/dist_size.py [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "packaging"))

from _dists import source_files  # noqa: E402
from _sbom import resolve_closure  # noqa: E402
from packaging.utils import canonicalize_name  # noqa: E402

WHEELHOUSE = ROOT / ".venv" / "wheelhouse"
_TOOLS = {"pip", "setuptools", "wheel"}
# Run by each interpreter: every installed distribution with the bytes of its RECORD's files.
_INVENTORY = """
import json, os
from importlib import metadata
out = []
for d in metadata.distributions():
    size = 0
    for f in d.files or []:
        if "__pycache__" in f.parts or f.suffix == ".pyc":
            continue
        p = d.locate_file(f)
        if os.path.isfile(p):
            size += os.path.getsize(p)
    out.append({"name": d.metadata["Name"], "version": d.version, "bytes": size})
print(json.dumps(out))
"""


def _run(*command: str, **kwargs: object) -> str:
    result = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        sys.exit(f"error: {' '.join(command[:4])}…: {result.stderr.strip()[-400:]}")
    return str(result.stdout)


def _inventory(python: Path) -> dict[str, dict[str, Any]]:
    entries = json.loads(_run(str(python), "-c", _INVENTORY))
    return {canonicalize_name(e["name"]): e for e in entries}


def _ensure_wheelhouse() -> None:
    if WHEELHOUSE.is_dir() and any(WHEELHOUSE.glob("*.whl")):
        return
    reqs = _run(sys.executable, str(ROOT / "packaging" / "build.py"), "requirements", "agent")
    _run(sys.executable, "-m", "pip", "wheel", "-q", "-w", str(WHEELHOUSE), *reqs.split())


def _du(path: Path) -> int:
    total = 0
    for dirpath, _, names in os.walk(path):
        top = Path(dirpath).relative_to(path).parts[:1]
        if top and top[0].split("-")[0].split(".")[0].lower() in _TOOLS | {"_distutils_hack"}:
            continue
        total += sum(os.path.getsize(Path(dirpath, n)) for n in names)
    return total


def _device(work: Path) -> dict[str, Any]:
    out = work / "dist"
    epoch = _run("git", "-C", str(ROOT), "log", "-1", "--format=%ct").strip()
    env = {**os.environ, "SOURCE_DATE_EPOCH": epoch}
    _run(sys.executable, str(ROOT / "packaging" / "build.py"), "--out", str(out), env=env)
    wheel = next(out.glob("trustfleet_agent-*.whl"))
    venv = work / "venv"
    _run(sys.executable, "-m", "venv", str(venv))
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-index"]
    _run(*pip, "--find-links", str(WHEELHOUSE), str(wheel))
    found = {k: v for k, v in _inventory(venv / "bin" / "python").items() if k not in _TOOLS}
    site = next((venv / "lib").glob("python3*/site-packages"))
    return {
        "wheel_bytes": wheel.stat().st_size,
        "distributions": sorted(f"{v['name']}=={v['version']}" for v in found.values()),
        "installed_bytes": sum(int(v["bytes"]) for v in found.values()),
        "bytes_by_distribution": {v["name"]: v["bytes"] for v in found.values()},
        "site_packages_du_bytes": _du(site),
    }


def _today() -> dict[str, Any]:
    root = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    _, nodes = resolve_closure(root["project"]["dependencies"])
    dev = _inventory(Path(sys.executable))
    own = sum((ROOT / "src" / f).stat().st_size for f in source_files(ROOT / "src"))
    deps = sum(int(dev[n]["bytes"]) for n in nodes)
    return {
        "distributions": len(nodes) + 1,
        "installed_bytes": deps + own,
        "server_packages": sorted(n for n in nodes if n in {"sqlalchemy", "numpy", "scikit-learn"}),
    }


def main() -> int:
    """Measure and print the figures (``--json``: one JSON document)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()
    _ensure_wheelhouse()
    with tempfile.TemporaryDirectory(prefix="tf-dist-size-") as work:
        device = _device(Path(work))
    figures: dict[str, Any] = {"device": device, "today": _today()}
    if args.json:
        print(json.dumps(figures, indent=2, sort_keys=True))
        return 0
    mib = 1024 * 1024
    print(f"device distribution (trustfleet-agent wheel {device['wheel_bytes'] / 1024:.0f} KiB):")
    for line in device["distributions"]:
        print(f"  {line}")
    print(
        f"  installed: {device['installed_bytes'] / mib:.1f} MiB "
        f"(site-packages with caches: {device['site_packages_du_bytes'] / mib:.1f} MiB)"
    )
    today = figures["today"]
    print(
        f"today (one distribution, {today['distributions']} distributions installed): "
        f"{today['installed_bytes'] / mib:.1f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
