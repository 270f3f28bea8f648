"""Ceremonies' pure parts: ``--pin-file`` parsing, PIN files' bounds, the custodian threshold,
and that no PIN is ever shown by ``repr``."""

from __future__ import annotations

from pathlib import Path

import pytest

from trustfleet.errors import Config, InvalidInput
from trustfleet.services.ceremony import (
    CeremonyKeys,
    parse_pin_files,
    present_tokens,
    read_pin_file,
)

ROOTS = ["tf-tuf-root-1", "tf-tuf-root-2", "tf-tuf-root-3"]


def test_pin_files_parse_to_token_and_path() -> None:
    parsed = parse_pin_files(["tf-root=/media/a/pin", "tf-tuf-root-2=rel/pin=x"])
    assert parsed == {"tf-root": Path("/media/a/pin"), "tf-tuf-root-2": Path("rel/pin=x")}
    assert parse_pin_files([]) == {}


@pytest.mark.parametrize(
    "spec",
    ["tf-root", "=/a", "tf-root=", "tf root=/a", "-x=/a", "t" * 33 + "=/a", "../x=/a"],
    ids=["no-equals", "no-token", "no-path", "space", "leading-dash", "label-too-long", "dots"],
)
def test_malformed_pin_file_specs_are_refused(spec: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_pin_files([spec])
    assert caught.value.code == "ceremony.pin_file"


def test_a_token_named_twice_is_refused() -> None:
    with pytest.raises(InvalidInput, match="twice"):
        parse_pin_files(["tf-root=/a", "tf-root=/b"])


def _pin_file(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


def test_pin_file_is_read_without_its_newline(tmp_path: Path) -> None:
    assert read_pin_file(_pin_file(tmp_path / "p", b"s3cret\n")) == "s3cret"


@pytest.mark.parametrize(
    ("data", "mode", "code"),
    [
        (b"s3cret\n", 0o644, "keystore.pin_file.mode"),
        (b"", 0o600, "keystore.pin_file"),
        (b"x" * 5000, 0o600, None),
        (b"\xff\xfe", 0o600, "keystore.pin_file"),
    ],
    ids=["readable-by-others", "empty", "too-large", "not-utf8"],
)
def test_bad_pin_files_are_refused(
    tmp_path: Path, data: bytes, mode: int, code: str | None
) -> None:
    with pytest.raises(Config) as caught:
        read_pin_file(_pin_file(tmp_path / "p", data, mode))
    if code is not None:
        assert caught.value.code == code


def test_missing_pin_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(Config):
        read_pin_file(tmp_path / "absent")


def _keys(*tokens: str) -> CeremonyKeys:
    return CeremonyKeys(offline=Path("/media/offline"), pins={t: f"pin-{t}" for t in tokens})


@pytest.mark.parametrize(
    ("given", "present"),
    [
        (ROOTS, ROOTS),
        (["tf-tuf-root-3", "tf-tuf-root-1"], ["tf-tuf-root-1", "tf-tuf-root-3"]),
        (["tf-tuf-root-2", "tf-tuf-root-3", "tf-root"], ["tf-tuf-root-2", "tf-tuf-root-3"]),
    ],
    ids=["all-three", "two-of-three", "two-and-an-unrelated-token"],
)
def test_threshold_met(given: list[str], present: list[str]) -> None:
    assert present_tokens(_keys(*given), tokens=ROOTS, threshold=2) == present


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        (["tf-tuf-root-2"], "missing: tf-tuf-root-1, tf-tuf-root-3"),
        ([], "missing: tf-tuf-root-1, tf-tuf-root-2, tf-tuf-root-3"),
        (["tf-root"], "missing: tf-tuf-root-1, tf-tuf-root-2, tf-tuf-root-3"),
    ],
    ids=["one-of-three", "none", "only-an-unrelated-token"],
)
def test_threshold_not_met_names_the_missing_tokens(given: list[str], missing: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        present_tokens(_keys(*given), tokens=ROOTS, threshold=2)
    assert caught.value.code == "ceremony.threshold"
    assert missing in caught.value.message and "2 needed" in caught.value.message


def test_a_missing_pin_names_its_token() -> None:
    with pytest.raises(InvalidInput) as caught:
        _keys("tf-tuf-root-1").pin("tf-root")
    assert caught.value.code == "ceremony.pin.missing" and "tf-root" in caught.value.message


def test_repr_never_shows_a_pin() -> None:
    keys = _keys(*ROOTS)
    assert "pin-" not in repr(keys) and "pin-" not in str(keys)
    assert keys.tokens == ROOTS
