"""Finding the PKCS#11 module and writing SoftHSM2 configurations."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from trustfleet.errors import Config
from trustfleet.keystore import DEFAULT_MODULE_CANDIDATES, find_module, write_softhsm_conf


def test_explicit_module_must_exist(tmp_path: Path) -> None:
    with pytest.raises(Config) as info:
        find_module(tmp_path / "libnothing.so")
    assert info.value.hint


def test_explicit_module(tmp_path: Path) -> None:
    module = tmp_path / "libfake.so"
    module.write_bytes(b"")
    assert find_module(str(module)) == module.resolve()


def test_default_candidates(monkeypatch: pytest.MonkeyPatch) -> None:
    if not any(candidate.is_file() for candidate in DEFAULT_MODULE_CANDIDATES):
        pytest.skip("SoftHSM2 is not installed in a known location on this host")
    assert find_module().is_file()


def test_no_candidate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(
        "trustfleet.keystore._module.DEFAULT_MODULE_CANDIDATES", (tmp_path / "none.so",)
    )
    with pytest.raises(Config, match="no PKCS#11 module found"):
        find_module()


def test_write_softhsm_conf(tmp_path: Path) -> None:
    token_dir = tmp_path / "home" / "tokens"
    conf = write_softhsm_conf(tmp_path / "home" / "softhsm2.conf", token_dir=token_dir)
    text = conf.read_text()
    assert f"directories.tokendir = {token_dir}\n" in text
    assert "objectstore.backend = file\n" in text
    assert "log.level = ERROR\n" in text
    assert stat.S_IMODE(token_dir.stat().st_mode) == 0o700


def test_system_token_dir_refused(tmp_path: Path) -> None:
    with pytest.raises(Config, match="system-wide"):
        write_softhsm_conf(tmp_path / "c.conf", token_dir=Path("/var/lib/softhsm/tokens"))
