"""Reproducible builds of the two distributions (issue 17 §2, ADR 0020).

Two ``git archive HEAD`` extractions in different folders, one with umask 022 and one with 077,
every file of the second touched to another time: built with the same SOURCE_DATE_EPOCH, every
output is byte-identical. The outputs are then checked by independent tools: coreutils
``sha256sum -c``, ``python -m zipfile -t`` and cyclonedx-python-lib's JSON schema validator.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[3]
EPOCH = "1700000000"
SERVER_ONLY = {"sqlalchemy", "alembic", "psycopg", "starlette", "fastapi", "uvloop", "typer",
               "paho-mqtt", "rich", "jinja2", "scikit-learn", "numpy"}  # fmt: skip


def _extract(dest: Path, *, umask: str) -> None:
    dest.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", "HEAD"],
        capture_output=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    subprocess.run(["bash", "-c", f"umask {umask} && tar -x -C {dest}"], input=archive,
                   check=True, timeout=120)  # fmt: skip


def _build(tree: Path, out: Path) -> dict[str, object]:
    env = {**os.environ, "SOURCE_DATE_EPOCH": EPOCH}
    result = subprocess.run(
        [sys.executable, str(tree / "packaging" / "build.py"), "--out", str(out), "--json"],
        capture_output=True, text=True, env=env, cwd=tree, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout")
    base = tmp_path_factory.mktemp("repro")
    one, two = base / "one", base / "elsewhere" / "two"
    two.parent.mkdir()
    _extract(one, umask="022")
    _extract(two, umask="077")
    for dirpath, _, filenames in os.walk(two):
        for name in filenames:
            os.utime(Path(dirpath, name), (1_000_000_000, 1_000_000_000))
    _build(one, base / "out-one")
    _build(two, base / "out-two")
    return base / "out-one", base / "out-two"


def test_two_builds_are_byte_identical(builds: tuple[Path, Path]) -> None:
    one, two = builds
    names = sorted(p.name for p in one.iterdir())
    assert names == sorted(p.name for p in two.iterdir())
    assert len(names) == 5 and "SHA256SUMS" in names
    for name in names:
        assert (one / name).read_bytes() == (two / name).read_bytes(), name


def test_sha256sum_checks_the_four_files(builds: tuple[Path, Path]) -> None:
    result = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=builds[0],
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(": OK") == 4


def test_the_sboms_are_valid_cyclonedx_1_6(builds: tuple[Path, Path]) -> None:
    validator = JsonStrictValidator(SchemaVersion.V1_6)
    sboms = sorted(builds[0].glob("*.cdx.json"))
    assert len(sboms) == 2
    for sbom in sboms:
        text = sbom.read_text(encoding="utf-8")
        assert validator.validate_str(text) is None, sbom.name
        doc = json.loads(text)
        wheel = next(builds[0].glob(sbom.name.replace(".cdx.json", "-py3-none-any.whl")))
        digests = {h["content"] for h in doc["metadata"]["component"]["hashes"]}
        sums = (builds[0] / "SHA256SUMS").read_text().split()
        assert sums[sums.index(wheel.name) - 1] in digests
        refs = {c["bom-ref"] for c in doc["components"]} | {doc["metadata"]["component"]["bom-ref"]}
        assert {d["ref"] for d in doc["dependencies"]} == refs
        assert all(c["purl"].startswith("pkg:pypi/") for c in doc["components"])


def test_the_wheels_pass_zipfile_t(builds: tuple[Path, Path]) -> None:
    for wheel in sorted(builds[0].glob("*.whl")):
        command = [sys.executable, "-m", "zipfile", "-t", str(wheel)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr


def test_the_device_wheel_names_no_server_requirement(builds: tuple[Path, Path]) -> None:
    wheel = next(builds[0].glob("trustfleet_agent-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        meta_name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(zf.read(meta_name).decode())
        names = zf.namelist()
    requires = {Requirement(r).name.lower() for r in meta.get_all("Requires-Dist") or []}
    assert requires and not requires & SERVER_ONLY
    assert meta["Name"] == "trustfleet-agent"
    assert "trustfleet/agent/__main__.py" in names
    assert not any(n.startswith(("trustfleet/server/", "trustfleet/store/")) for n in names)
    assert not any("__pycache__" in n or n.endswith((".pyc", ".so")) for n in names)
