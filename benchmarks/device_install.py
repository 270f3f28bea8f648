"""Device installation: the device distribution alone, next to today's whole-product install.

What runs (in a temporary directory removed at the end):

1. ``packaging/build.py --out DIR`` (both wheels, SBOMs, SHA256SUMS), timed.
2. A fresh venv (``python -m venv``) and ``pip install --no-index --find-links
   .venv/wheelhouse <device wheel>`` (offline, pip's configuration off), timed.
3. With ``--fresh-wheelhouse``: ``pip wheel --no-cache-dir`` of the device requirements into a
   scratch folder, timed (what ``make deps`` costs the first time; tpm2-pytss builds from
   source) — this one uses the package indexes pip is configured with.

Figures: the distributions the device venv holds (with versions) and their installed bytes
(every file their RECORD lists, bytecode included; pip and setuptools left out), against
"today": the dependency closure of the whole product (server and device requirements, as
``pip install trustfleet`` pulled before the split) measured the same way in the dev venv.
Our own code counts as the uncompressed size of its wheel(s). Peak RSS of importing the
agent's runner in each interpreter.

Usage::

    .venv/bin/python benchmarks/device_install.py [--fresh-wheelhouse] [--keep] [--json]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from _procs import benchmark_parser, drop_workdir, emit

from support.devicedist import (
    BUILD,
    VENV_TOOLS,
    build_dists,
    closure,
    local_then_dev,
    make_device_venv,
    wheel_meta,
)

TIME = "/usr/bin/time"  # GNU time: peak RSS of one child (%M)
_SIZES = """
import importlib.metadata as m, json, sys
wanted = set(json.loads(sys.argv[1]))
norm = lambda n: n.lower().replace("_", "-").replace(".", "-")
out = {}
for d in m.distributions():
    name = norm(d.metadata["Name"])
    if wanted and name not in wanted:
        continue
    size = 0
    for f in d.files or ():
        p = f.locate()
        if p.is_file():
            size += p.stat().st_size
    out[name] = {"version": d.version, "bytes": size}
print(json.dumps(out))
"""
_IMPORT = "import trustfleet.agent.runner, trustfleet.agent.updater.worker"


def _sizes(python: Path | str, names: set[str]) -> dict[str, Any]:
    proc = subprocess.run([str(python), "-I", "-c", _SIZES, json.dumps(sorted(names))],
                          capture_output=True, text=True, check=True, timeout=120)  # fmt: skip
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def _import_rss_kb(python: Path | str) -> int:
    proc = subprocess.run([TIME, "-f", "%M", str(python), "-c", _IMPORT], capture_output=True,
                          text=True, check=True, timeout=120)  # fmt: skip
    return int(proc.stderr.strip().splitlines()[-1])


def _wheel_bytes(wheel: Path) -> int:
    with zipfile.ZipFile(wheel) as archive:
        return sum(i.file_size for i in archive.infolist())


def _fresh_wheelhouse_s(tmp: Path) -> float:
    reqs = subprocess.run([sys.executable, str(BUILD), "requirements", "agent"],
                          capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-cache-dir", "-w",
                    str(tmp / "wheelhouse"), *reqs], check=True, capture_output=True)  # fmt: skip
    return time.perf_counter() - started


def measure(tmp: Path, *, fresh_wheelhouse: bool) -> dict[str, Any]:
    """Build, install, measure; the figures' document."""
    started = time.perf_counter()
    dists = build_dists(tmp / "dists")
    built_s = time.perf_counter() - started
    started = time.perf_counter()
    venv = make_device_venv(tmp / "venv", dists)
    install_s = time.perf_counter() - started
    device_deps = {
        n: v for n, v in _sizes(venv.python, set()).items()
        if n not in VENV_TOOLS and n != "trustfleet-agent"
    }  # fmt: skip
    device, server = wheel_meta(dists.device_wheel), wheel_meta(dists.server_wheel)
    requires = local_then_dev({device.name: device, server.name: server})
    today_names = closure([server.name], requires=requires) - {server.name, device.name}
    today_deps = _sizes(sys.executable, set(today_names))
    own_device, own_server = _wheel_bytes(dists.device_wheel), _wheel_bytes(dists.server_wheel)
    return {
        "version": dists.version,
        "build_s": round(built_s, 1),
        "offline_install_s": round(install_s, 1),
        "fresh_wheelhouse_s": round(_fresh_wheelhouse_s(tmp), 1) if fresh_wheelhouse else None,
        "device": {
            "distributions": {n: d["version"] for n, d in sorted(device_deps.items())},
            "dependency_bytes": sum(d["bytes"] for d in device_deps.values()),
            "own_bytes": own_device,
            "import_rss_kb": _import_rss_kb(venv.python),
        },
        "today": {
            "distributions": len(today_deps),
            "dependency_bytes": sum(d["bytes"] for d in today_deps.values()),
            "own_bytes": own_device + own_server,
            "import_rss_kb": _import_rss_kb(sys.executable),
        },
    }


def _show(doc: dict[str, Any]) -> None:
    mb = 1024 * 1024
    dev, today = doc["device"], doc["today"]
    print(f"device distribution {doc['version']}: build {doc['build_s']} s, offline install "
          f"{doc['offline_install_s']} s, fresh wheelhouse {doc['fresh_wheelhouse_s']} s")  # fmt: skip
    print("| | distributions | dependencies | own code | peak RSS importing the agent |")
    print("|---|---|---|---|---|")
    for label, part, count in (("device wheel alone", dev, len(dev["distributions"])),
                               ("today (whole product)", today, today["distributions"])):  # fmt: skip
        print(f"| {label} | {count} | {part['dependency_bytes'] / mb:.1f} MiB | "
              f"{part['own_bytes'] / mb:.1f} MiB | {part['import_rss_kb'] / 1024:.1f} MiB |")  # fmt: skip
    print("device dependencies: " + ", ".join(f"{n} {v}" for n, v in dev["distributions"].items()))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; its exit code."""
    ap = benchmark_parser(__doc__, keep=True)
    ap.add_argument("--fresh-wheelhouse", action="store_true",
                    help="also time a wheelhouse built with no pip cache (uses the indexes)")  # fmt: skip
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="tf-device-install-"))
    try:
        doc = measure(tmp, fresh_wheelhouse=args.fresh_wheelhouse)
    finally:
        drop_workdir(tmp, keep=args.keep)
    emit(doc, as_json=args.json, show=_show)
    return 0


if __name__ == "__main__":
    sys.exit(main())
