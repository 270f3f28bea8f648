"""PIN sources: files must be private, env vars must be set, PINs never show up in messages."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from trustfleet.errors import Config, Conflict, InvalidInput
from trustfleet.keystore import PinSource, generate_pin, write_pin_file

PIN = "s3cret-PIN-value-42"


def test_parse_file_relative_to_base_dir(tmp_path: Path) -> None:
    source = PinSource.parse("file:pins/user.pin", base_dir=tmp_path)
    assert source == PinSource(kind="file", location=str(tmp_path / "pins/user.pin"))
    assert str(source) == f"file:{tmp_path}/pins/user.pin"


def test_parse_file_absolute(tmp_path: Path) -> None:
    assert PinSource.parse(f"file:{tmp_path}/x").location == f"{tmp_path}/x"


BAD_SOURCES = [
    ("no-scheme", "/etc/pin"),
    ("empty", "file:"),
    ("unknown-scheme", "pass:1234"),
    ("bad-env-name", "env:A-B"),
    ("env-with-space", "env:A B"),
]


@pytest.mark.parametrize("text", [t for _, t in BAD_SOURCES], ids=[i for i, _ in BAD_SOURCES])
def test_bad_sources(text: str) -> None:
    with pytest.raises(InvalidInput):
        PinSource.parse(text)


def test_write_and_read_pin_file(tmp_path: Path) -> None:
    path = write_pin_file(tmp_path / "user.pin", PIN)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == PIN + "\n"
    assert PinSource.parse(f"file:{path}").read() == PIN
    assert sorted(p.name for p in tmp_path.iterdir()) == ["user.pin"]  # no temp file left


def test_write_pin_file_never_replaces(tmp_path: Path) -> None:
    path = write_pin_file(tmp_path / "user.pin", PIN)
    with pytest.raises(Conflict):
        write_pin_file(path, "other-pin-value")
    assert PinSource.parse(f"file:{path}").read() == PIN


def test_read_strips_only_one_newline(tmp_path: Path) -> None:
    path = tmp_path / "pin"
    path.write_text(PIN + "\n\n")
    path.chmod(0o600)
    assert PinSource.parse(f"file:{path}").read() == PIN + "\n"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o602], ids=oct)
def test_group_or_world_accessible_pin_file_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "user.pin"
    path.write_text(PIN)
    path.chmod(mode)
    with pytest.raises(Config) as info:
        PinSource.parse(f"file:{path}").read()
    message = info.value.one_line()
    assert str(path) in message
    assert f"chmod 600 {path}" in message
    assert PIN not in message


def test_missing_pin_file(tmp_path: Path) -> None:
    with pytest.raises(Config, match="cannot open PIN file"):
        PinSource.parse(f"file:{tmp_path}/absent").read()


def test_directory_is_not_a_pin_file(tmp_path: Path) -> None:
    directory = tmp_path / "dir"
    directory.mkdir(mode=0o700)
    with pytest.raises(Config, match="not a regular file"):
        PinSource.parse(f"file:{directory}").read()


def test_empty_pin_file_refused(tmp_path: Path) -> None:
    path = tmp_path / "pin"
    path.write_text("\n")
    path.chmod(0o600)
    with pytest.raises(Config, match="empty"):
        PinSource.parse(f"file:{path}").read()


def test_env_pin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TF_TEST_PIN", PIN)
    source = PinSource.parse("env:TF_TEST_PIN")
    assert source.read() == PIN
    assert PIN not in repr(source)
    assert PIN not in str(source)


@pytest.mark.parametrize("value", [None, ""], ids=["unset", "empty"])
def test_env_pin_unset_or_empty(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("TF_TEST_PIN", raising=False)
    else:
        monkeypatch.setenv("TF_TEST_PIN", value)
    with pytest.raises(Config, match="TF_TEST_PIN"):
        PinSource.parse("env:TF_TEST_PIN").read()


def test_generate_pin() -> None:
    pins = {generate_pin() for _ in range(100)}
    assert len(pins) == 100
    assert all(len(pin) >= 20 and pin.isprintable() and "\n" not in pin for pin in pins)


def test_write_pin_file_refuses_multiline(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        write_pin_file(tmp_path / "pin", "a\nb")
    assert not os.listdir(tmp_path)
