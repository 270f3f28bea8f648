"""``trustfleet release …`` and ``trustfleet ota …`` through the real CLI, on a home made by
``server init`` (no running server needed): JSON output and one-line errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.sbom import write_sbom
from support.server import cli_json, init_home, one_error_line, run_cli
from trustfleet.sim.process import free_port
from trustfleet.sim.server import SimServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = tmp_path_factory.mktemp("release-cli")
    path = base / "home"
    init_home(path, port=free_port())
    yield path


def test_build_publish_list_show(home: Path, tmp_path: Path) -> None:
    image = tmp_path / "image.bin"
    image.write_bytes(bytes(range(256)) * 1024)
    sbom = write_sbom(tmp_path / "sbom.json")
    built = cli_json(
        home, "release", "build", "--version", "1.0.0", "--image", image, "--sbom", sbom
    )
    assert built["min_version"] == "1.0.0" and built["deltas"] == []
    staged = home / "ota" / "staging" / "sim-v1" / "1.0.0"
    assert (staged / "image.bin").read_bytes() == image.read_bytes()
    published = cli_json(home, "release", "publish", "--version", "1.0.0")
    assert published["version"] == "1.0.0" and published["deltas"] == []
    listed = cli_json(home, "release", "list")["releases"]
    assert [r["version"] for r in listed] == ["1.0.0"]
    shown = cli_json(home, "release", "show", "--version", "1.0.0")
    manifest = shown["manifest"]
    assert manifest["image"]["length"] == 256 * 1024
    assert manifest["measurements"][0]["pcr"] == 9
    line = one_error_line(run_cli("release", "publish", "--version", "1.0.0", "--home", home))
    assert "published already" in line and "Hint" in line


def test_ota_commands(home: Path) -> None:
    status = cli_json(home, "ota", "status")
    roles = status["roles"]
    assert roles["root"]["threshold"] == 2 and len(roles["root"]["keyids"]) == 3
    refreshed = cli_json(home, "ota", "refresh-timestamp")
    assert refreshed["roles"]["timestamp"]["version"] == roles["timestamp"]["version"] + 1
    rotated = cli_json(home, "ota", "rotate-root", *SimServer(home).ceremony_args())
    assert rotated["roles"]["root"]["version"] == roles["root"]["version"] + 1
    # rotate-online and the init refusal are covered in test_ota_repo_service.py.


_BUILD = ["release", "build", "--image"]
BAD = {
    "unknown-version": (["release", "show", "--version", "9.9.9"], "no published release"),
    "bad-version-text": ([*_BUILD, "{image}", "--version", "1.2"], "not a release version"),
    "bad-image-path": ([*_BUILD, "/nonexistent/img", "--version", "1.2.0"], "no file at"),
    "min-above-version": (
        [*_BUILD, "{image}", "--version", "1.2.0", "--min-version", "2.0.0"],
        "above version",
    ),
}


@pytest.mark.parametrize("case", list(BAD.values()), ids=list(BAD))
def test_bad_input_fails_with_one_line(
    home: Path, tmp_path: Path, case: tuple[list[str], str]
) -> None:
    args, expected = case
    image = tmp_path / "img"
    image.write_bytes(b"x" * 4096)
    args = [a.replace("{image}", str(image)) for a in args]
    line = one_error_line(run_cli(*args, "--home", home))
    assert expected in line
    assert "Hint" in line
