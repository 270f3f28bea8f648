"""packaging/_wheel.py: the deterministic PEP 427 writer; product_version; build.py's CLI."""

from __future__ import annotations

import base64
import hashlib
import io
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

import trustfleet

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "packaging"))

from _dists import DEFAULT_EPOCH, BuildError, source_date_epoch  # noqa: E402
from _wheel import WheelSpec, build_wheel, wheel_filename  # noqa: E402

EPOCH = 1_700_000_000
SPEC = WheelSpec(
    name="Trust.Fleet_agent",
    version="1.2.3",
    summary="s",
    description="# d\n",
    requires=("tuf>=5.0", "cryptography>=43"),
    scripts=(("tf-agent", "trustfleet.agent.__main__:run"),),
    files=(
        ("trustfleet/z.py", b"z = 1\n"),
        ("trustfleet/__init__.py", b""),
        ("trustfleet/a.py", b"a"),
    ),
)
INFO = "trust_fleet_agent-1.2.3.dist-info"


def _zip(data: bytes) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(data))


def test_same_inputs_same_bytes_and_the_epoch_is_in_every_entry() -> None:
    one, two = build_wheel(SPEC, epoch=EPOCH), build_wheel(SPEC, epoch=EPOCH)
    assert one == two
    assert build_wheel(SPEC, epoch=EPOCH + 2) != one
    infos = _zip(one).infolist()
    assert {i.date_time for i in infos} == {(2023, 11, 14, 22, 13, 20)}
    assert {i.external_attr >> 16 for i in infos} == {0o100644}
    assert {i.compress_type for i in infos} == {zipfile.ZIP_DEFLATED}


def test_an_epoch_before_1980_is_clamped() -> None:
    infos = _zip(build_wheel(SPEC, epoch=0)).infolist()
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}


def test_entries_are_sorted_with_the_dist_info_last_and_record_the_very_last() -> None:
    names = _zip(build_wheel(SPEC, epoch=EPOCH)).namelist()
    assert names == [
        "trustfleet/__init__.py", "trustfleet/a.py", "trustfleet/z.py",
        f"{INFO}/METADATA", f"{INFO}/WHEEL", f"{INFO}/entry_points.txt", f"{INFO}/RECORD",
    ]  # fmt: skip


def test_record_lists_every_other_entry_with_its_urlsafe_sha256() -> None:
    zf = _zip(build_wheel(SPEC, epoch=EPOCH))
    lines = zf.read(f"{INFO}/RECORD").decode().splitlines()
    assert lines[-1] == f"{INFO}/RECORD,,"
    for line in lines[:-1]:
        path, digest, size = line.split(",")
        data = zf.read(path)
        expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        assert (digest, int(size)) == (f"sha256={expected}", len(data))
    assert len(lines) == len(zf.namelist())


def test_metadata_wheel_and_entry_points() -> None:
    zf = _zip(build_wheel(SPEC, epoch=EPOCH))
    meta = zf.read(f"{INFO}/METADATA").decode()
    head, _, body = meta.partition("\n\n")
    assert head.splitlines()[:3] == [
        "Metadata-Version: 2.4",
        "Name: Trust.Fleet_agent",
        "Version: 1.2.3",
    ]
    assert "Requires-Python: >=3.11" in head and "License-Expression: Apache-2.0" in head
    assert "Requires-Dist: tuf>=5.0\nRequires-Dist: cryptography>=43" in head
    assert body == "# d\n"
    assert "Root-Is-Purelib: true\nTag: py3-none-any" in zf.read(f"{INFO}/WHEEL").decode()
    scripts = zf.read(f"{INFO}/entry_points.txt").decode()
    assert scripts == "[console_scripts]\ntf-agent = trustfleet.agent.__main__:run\n"
    assert wheel_filename(SPEC.name, "1.2.3") == "trust_fleet_agent-1.2.3-py3-none-any.whl"


def test_a_path_inside_the_dist_info_is_refused() -> None:
    bad = WheelSpec(**{**SPEC.__dict__, "files": ((f"{INFO}/METADATA", b"x"),)})
    with pytest.raises(ValueError, match="reserved"):
        build_wheel(bad, epoch=EPOCH)


def test_source_date_epoch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1234")
    assert source_date_epoch(tmp_path) == 1234
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(BuildError, match="whole seconds"):
        source_date_epoch(tmp_path)
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert source_date_epoch(tmp_path) == DEFAULT_EPOCH  # not in git


def test_product_version_is_the_pyproject_version() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert trustfleet.product_version() == pyproject["project"]["version"]
    assert trustfleet.__version__ == trustfleet.product_version()
    with pytest.raises(AttributeError):
        _ = trustfleet.no_such_name  # type: ignore[attr-defined]


def _build(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "packaging" / "build.py"), *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_requirements_agent_prints_the_device_requirements() -> None:
    result = _build("requirements", "agent")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    assert "tuf>=5.0" in lines and not any(line.lower().startswith("sqlalchemy") for line in lines)
    server = _build("requirements", "server").stdout.split()
    version = trustfleet.product_version()
    assert f"trustfleet-agent=={version}" in server


@pytest.mark.parametrize("args", [["requirements", "both"], ["frobnicate"]])
def test_a_bad_command_is_one_line_and_exit_1(args: list[str]) -> None:
    result = _build(*args)
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
