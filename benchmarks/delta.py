"""Delta updates: our segmented zstd deltas against ``zstd --patch-from``, bsdiff4 and detools.

What runs (in a temporary directory removed at the end):

1. ``trustfleet.sim.image.build_image`` writes the simulated images 1.0.0, 1.0.1 (a patch
   release: ~2 % of the files edited, later files shifted) and 2.0.0 (a major release: ~30 %
   edited, files added/removed, a fifth of the image re-laid out) of ``--size`` bytes.
2. For the minor pair (1.0.0 → 1.0.1) and the major pair (1.0.0 → 2.0.0):

   * ours: ``make_delta`` in a child process (encode time, encoder peak RSS), then
     ``apply_delta`` in another child process that does nothing else, like a device (apply
     time, **peak RSS of the applying process** from ``wait4``), output checked by SHA-256;
   * the ``zstd`` CLI: ``zstd -T1 --patch-from=OLD NEW --long=27 -L`` for each ``--zstd-levels``
     level (size, time) and its decoder's peak RSS (``zstd -d --patch-from``);
   * bsdiff4 (``bsdiff4.file_diff``) within ``--bsdiff-budget-s``; if it does not finish, it is
     run on a ``--fallback-size`` pair instead, where ours and zstd are measured again so the
     three sizes compare on the same pair; detools (``--detools``) on that pair too.

Usage::

    .venv/bin/python benchmarks/delta.py [--size 64MiB] [--level 19] [--zstd-levels 19,3]
        [--bsdiff-budget-s 120] [--fallback-size 16MiB] [--detools] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _procs import benchmark_parser, emit, figures_table, report_console

from trustfleet.sim.process import stop_group

VENV_PY = sys.executable
TIME = "/usr/bin/time"  # GNU time: peak RSS of one child (%M)
_ENCODE = """
import json, sys, time
from pathlib import Path
from trustfleet.ota.delta import make_delta
t = time.perf_counter()
info = make_delta(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), level=int(sys.argv[4]))
print(json.dumps({"length": info.length, "seconds": time.perf_counter() - t}))
"""
_APPLY = """
import hashlib, json, sys, time
from pathlib import Path
from trustfleet.ota.delta import apply_delta
t = time.perf_counter()
with open(sys.argv[2], "rb") as delta, open(sys.argv[3], "wb") as out:
    n = apply_delta(Path(sys.argv[1]), delta, out, expected_length=int(sys.argv[4]),
                    max_output_bytes=int(sys.argv[4]))
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")][0]
print(json.dumps({"written": n, "seconds": time.perf_counter() - t,
                  "vm_hwm_mb": int(hwm.split()[1]) / 1024}))
"""
_IDLE = "import trustfleet.ota.delta"
_BSDIFF = """
import json, sys, time, bsdiff4
t = time.perf_counter()
bsdiff4.file_diff(sys.argv[1], sys.argv[2], sys.argv[3])
print(json.dumps({"seconds": time.perf_counter() - t}))
"""
_DETOOLS = """
import json, sys, time, detools
t = time.perf_counter()
with open(sys.argv[1], "rb") as f, open(sys.argv[2], "rb") as g, open(sys.argv[3], "wb") as p:
    detools.create_patch(f, g, p, compression="zstd", algorithm=sys.argv[4], patch_type=sys.argv[5])
print(json.dumps({"seconds": time.perf_counter() - t}))
"""


def run_child(argv: list[str], *, budget_s: float | None = None) -> dict[str, Any] | None:
    """Run a child in its own process group; its stdout JSON plus wall time and peak RSS.

    The peak RSS is GNU time's ``%M`` and the CPU time its ``%U + %S`` (``wait4`` of a child
    forked by the small ``time`` process: a child forked by this large Python process would
    inherit its high-water mark).
    Returns None if it did not finish within ``budget_s`` (its group is killed).
    """
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        full = [TIME, "-f", "%M %U %S", "-o", rss.name, *argv]
        start = time.perf_counter()
        proc = subprocess.Popen(
            full, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True
        )
        try:
            out, _ = proc.communicate(timeout=budget_s)
        except subprocess.TimeoutExpired:
            stop_group(proc, timeout_s=5.0)
            return None
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"{argv[:3]} failed with exit code {proc.returncode}")
        peak_kb, user_s, sys_s = rss.read().split()[-3:]
    doc: dict[str, Any] = json.loads(out) if out.strip() else {}
    doc["wall_s"] = wall
    doc["peak_rss_mb"] = int(peak_kb) / 1024
    doc["cpu_s"] = float(user_s) + float(sys_s)
    return doc


def build_images(folder: Path, size: int) -> dict[str, Path]:
    from trustfleet.sim.image import build_image

    paths = {}
    for version in ("1.0.0", "1.0.1", "2.0.0"):
        paths[version] = build_image(
            folder / f"{size}-{version}.bin", version=version, size_bytes=size
        ).path
    return paths


def ours(old: Path, new: Path, tmp: Path, *, level: int) -> dict[str, Any]:
    delta = tmp / "ours.delta"
    enc = run_child([VENV_PY, "-c", _ENCODE, str(old), str(new), str(delta), str(level)])
    assert enc is not None
    out = tmp / "rebuilt.bin"
    size = new.stat().st_size
    app = run_child([VENV_PY, "-c", _APPLY, str(old), str(delta), str(out), str(size)])
    assert app is not None
    if out.read_bytes() != new.read_bytes():
        raise RuntimeError("the rebuilt image differs from the new image")
    out.unlink()
    return {
        "level": level,
        "bytes": enc["length"],
        "encode_s": round(enc["seconds"], 2),
        "encode_cpu_s": round(enc["cpu_s"], 2),
        "encode_peak_rss_mb": round(enc["peak_rss_mb"], 1),
        "apply_s": round(app["seconds"], 2),
        "apply_peak_rss_mb": round(app["peak_rss_mb"], 1),
        "apply_vm_hwm_mb": round(app["vm_hwm_mb"], 1),
    }


def zstd_cli(old: Path, new: Path, tmp: Path, *, level: int) -> dict[str, Any]:
    delta, out = tmp / "zstd.delta", tmp / "zstd.out"
    ultra = ["--ultra"] if level > 19 else []
    enc = run_child(
        [
            "zstd",
            "-q",
            "-f",
            "-T1",
            *ultra,
            f"-{level}",
            "--long=27",
            f"--patch-from={old}",
            str(new),
            "-o",
            str(delta),
        ]
    )
    dec = run_child(
        ["zstd", "-q", "-f", "-d", "--long=27", f"--patch-from={old}", str(delta), "-o", str(out)]
    )
    assert enc is not None and dec is not None
    size = delta.stat().st_size
    delta.unlink()
    out.unlink()
    return {
        "level": level,
        "bytes": size,
        "encode_s": round(enc["wall_s"], 2),
        "encode_cpu_s": round(enc["cpu_s"], 2),
        "decode_peak_rss_mb": round(dec["peak_rss_mb"], 1),
    }


def bsdiff(old: Path, new: Path, tmp: Path, *, budget_s: float) -> dict[str, Any] | None:
    patch = tmp / "bsdiff.patch"
    res = run_child([VENV_PY, "-c", _BSDIFF, str(old), str(new), str(patch)], budget_s=budget_s)
    if res is None:
        return None
    size = patch.stat().st_size
    patch.unlink()
    return {
        "bytes": size,
        "encode_s": round(res["seconds"], 2),
        "encode_cpu_s": round(res["cpu_s"], 2),
    }


def detools_sizes(old: Path, new: Path, tmp: Path) -> dict[str, Any]:
    found = {}
    for algo, ptype in (("hdiffpatch", "hdiffpatch"), ("match-blocks", "sequential")):
        patch = tmp / "detools.patch"
        res = run_child([VENV_PY, "-c", _DETOOLS, str(old), str(new), str(patch), algo, ptype])
        assert res is not None
        found[algo] = {"bytes": patch.stat().st_size, "encode_s": round(res["seconds"], 2)}
        patch.unlink()
    return found


def measure_pair(
    old: Path, new: Path, tmp: Path, *, level: int, zstd_levels: list[int]
) -> dict[str, Any]:
    doc: dict[str, Any] = {"full_bytes": new.stat().st_size}
    doc["ours"] = ours(old, new, tmp, level=level)
    doc["zstd"] = [zstd_cli(old, new, tmp, level=lv) for lv in zstd_levels]
    best = min(z["bytes"] for z in doc["zstd"])
    doc["ratio_ours_to_best_zstd"] = round(doc["ours"]["bytes"] / best, 3)
    doc["ours_pct_of_full"] = round(100 * doc["ours"]["bytes"] / doc["full_bytes"], 3)
    return doc


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from trustfleet.ota.delta import MAX_DELTA_MEMORY_BYTES

    t = time.perf_counter()
    images = build_images(tmp, args.size)
    doc: dict[str, Any] = {
        "machine": {
            "nproc": os.cpu_count(),
            "python": platform.python_version(),
            "zstd": subprocess.run(
                ["zstd", "-V"], capture_output=True, text=True, check=True
            ).stdout.strip(),
        },
        "params": {"size": args.size, "level": args.level, "zstd_levels": args.zstd_levels},
        "image_build_s": round((time.perf_counter() - t) / 3, 2),
        "max_delta_memory_bytes": MAX_DELTA_MEMORY_BYTES,
    }
    idle = run_child([VENV_PY, "-c", _IDLE])
    assert idle is not None
    doc["python_idle_rss_mb"] = round(idle["peak_rss_mb"], 1)
    pairs = {"minor": ("1.0.0", "1.0.1"), "major": ("1.0.0", "2.0.0")}
    doc["pairs"] = {}
    for name, (a, b) in pairs.items():
        pair = measure_pair(
            images[a], images[b], tmp, level=args.level, zstd_levels=args.zstd_levels
        )
        pair["bsdiff4"] = bsdiff(images[a], images[b], tmp, budget_s=args.bsdiff_budget_s)
        doc["pairs"][name] = pair
    if any(p["bsdiff4"] is None for p in doc["pairs"].values()) or args.detools:
        doc["fallback"] = fallback(args, tmp)
    return doc


def fallback(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """bsdiff4 (and detools) with ours and zstd on a smaller pair, for a like-for-like size."""
    folder = tmp / "fallback"
    folder.mkdir()
    images = build_images(folder, args.fallback_size)
    out: dict[str, Any] = {"size": args.fallback_size, "pairs": {}}
    for name, (a, b) in {"minor": ("1.0.0", "1.0.1"), "major": ("1.0.0", "2.0.0")}.items():
        pair = measure_pair(
            images[a], images[b], folder, level=args.level, zstd_levels=args.zstd_levels[:1]
        )
        pair["bsdiff4"] = bsdiff(images[a], images[b], folder, budget_s=4 * args.bsdiff_budget_s)
        if args.detools:
            pair["detools"] = detools_sizes(images[a], images[b], folder)
        out["pairs"][name] = pair
    shutil.rmtree(folder)
    return out


def print_table(doc: dict[str, Any]) -> None:
    p = doc["params"]
    console = report_console(
        "Delta benchmark",
        f"{p['size'] / (1 << 20):g} MiB simulated images, ours at zstd "
        f"level {p['level']}; {doc['machine']['zstd']}; idle Python with the decoder imported: "
        f"{doc['python_idle_rss_mb']} MB RSS; image build {doc['image_build_s']} s each",
        width=200,
    )
    sections = [(f"{p['size'] >> 20} MiB", doc["pairs"])]
    if "fallback" in doc:
        sections.append((f"{doc['fallback']['size'] >> 20} MiB", doc["fallback"]["pairs"]))
    for label, pairs in sections:
        cols = (
            "pair",
            "ours B",
            "% full",
            "zstd --patch-from B",
            "ours/zstd",
            "bsdiff4 B",
            "encode s (CPU s)",
            "apply s",
            "apply RSS MB",
            "zstd -d RSS MB",
        )
        table = figures_table(cols, left=("pair",), title=label)
        for name, r in pairs.items():
            z = r["zstd"]
            bs = r["bsdiff4"]
            table.add_row(
                name,
                f"{r['ours']['bytes']:,}",
                f"{r['ours_pct_of_full']:.2f}",
                ", ".join(f"{x['bytes']:,} (-{x['level']})" for x in z),
                f"{r['ratio_ours_to_best_zstd']:.3f}",
                "over budget" if bs is None else f"{bs['bytes']:,}",
                f"{r['ours']['encode_s']} ({r['ours']['encode_cpu_s']})",
                f"{r['ours']['apply_s']}",
                f"{r['ours']['apply_peak_rss_mb']}",
                f"{z[0]['decode_peak_rss_mb']}",
            )
            if "detools" in r:
                console.print(f"{label} {name} detools: {r['detools']}")
        console.print(table)


def _size(text: str) -> int:
    from trustfleet.errors import InvalidInput
    from trustfleet.sim.image import parse_size

    try:
        return parse_size(text)
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(exc.one_line()) from exc


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = benchmark_parser(__doc__)
    ap.add_argument("--size", type=_size, default="64MiB", help="image size (default 64MiB)")
    ap.add_argument("--level", type=int, default=19, help="our zstd level (default 19)")
    ap.add_argument("--zstd-levels", default="19,3", help="zstd CLI levels (default 19,3)")
    ap.add_argument(
        "--bsdiff-budget-s",
        type=float,
        default=120.0,
        help="give up bsdiff4 on the main pair after this (default 120 s)",
    )
    ap.add_argument(
        "--fallback-size",
        type=_size,
        default="16MiB",
        help="pair size for bsdiff4/detools if over budget (default 16MiB)",
    )
    ap.add_argument("--detools", action="store_true", help="also measure detools (fallback pair)")
    args = ap.parse_args(argv)
    args.zstd_levels = [int(x) for x in args.zstd_levels.split(",") if x]
    if not args.zstd_levels or not all(1 <= lv <= 22 for lv in [args.level, *args.zstd_levels]):
        ap.error("levels must be 1-22")
    if shutil.which("zstd") is None or not Path(TIME).exists():
        ap.error(f"the zstd CLI and GNU time ({TIME}) are needed")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tf-bench-delta-") as tmp:
        doc = run(args, Path(tmp))
    emit(doc, as_json=args.json, show=print_table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
