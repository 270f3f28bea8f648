"""Issue 9 §6, findings 1, 3 and 5, through the real ``trustfleet`` CLI.

* Every file and folder ``server init``, ``release build/publish`` and ``factory provision``
  write has an explicit mode, under any umask: no entry is writable by group or others; staged
  firmware and the simulated TPM vendor's CA keys are private.
* The OTA repository lock is private (no other user can open it) and waiting for it is bounded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cliguard import (
    GUARD_TIMEOUT_S,
    HAVE_SWTPM,
    NOBODY,
    assert_one_line_refusal,
    cli,
    init,
    mode,
    ok,
    writable_by_others,
)
from support.locks import hold_lock
from support.sbom import write_sbom

# --- Finding 1 and 5: explicit modes under any umask ------------------------------------------


@pytest.mark.parametrize("umask", [0o000, 0o002], ids=["umask-000", "umask-002"])
def test_umask_group_writable_tree(tmp_path: Path, umask: int) -> None:
    """server init, release build/publish and factory provision under a permissive umask."""
    home = init(tmp_path / "home", umask=umask)
    image = tmp_path / "image.bin"
    image.write_bytes(os.urandom(64 * 1024))
    ok("release", "build", "--home", home, "--model", "sim-v1", "--version", "1.0.0",
       "--image", image, "--sbom", write_sbom(tmp_path / "sbom.json"), umask=umask)  # fmt: skip
    ok("release", "publish", "--home", home, "--model", "sim-v1", "--version", "1.0.0",
       umask=umask)  # fmt: skip
    devices = tmp_path / "devices"
    ok("factory", "provision", "--home", home, "--out", devices, "--count", "1", umask=umask)

    offline = tmp_path / "home-offline"  # the offline root's tokens (issue 14), beside the home
    assert writable_by_others(home, devices, offline) == []
    for private in ("secrets", "tokens", "db", "ota/repo", "ota/staging"):
        assert mode(home / private) == 0o700, private
    assert mode(offline) == mode(offline / "tokens") == 0o700
    assert mode(home / "trustfleet.toml") == 0o644
    assert mode(home / "tokens" / "softhsm2.conf") == 0o644
    (device,) = devices.iterdir()
    assert mode(device) == 0o700
    assert mode(device / "device.toml") == 0o644
    assert mode(device / "secrets" / "token.pin") == 0o600


def test_staged_firmware_private(tmp_path: Path) -> None:
    """Staged firmware (not published yet) is readable by its owner only."""
    home = init(tmp_path / "home")
    image = tmp_path / "image.bin"
    image.write_bytes(os.urandom(64 * 1024))
    ok("release", "build", "--home", home, "--model", "sim-v1", "--version", "1.0.0",
       "--image", image, "--sbom", write_sbom(tmp_path / "sbom.json"))  # fmt: skip
    staged = home / "ota" / "staging" / "sim-v1" / "1.0.0"
    assert [mode(p) for p in (staged.parent.parent, staged.parent, staged)] == [0o700] * 3
    for name in ("image.bin", "release.json", "sbom.cdx.json", "provenance.dsse.json"):
        assert mode(staged / name) == 0o600, name


@pytest.mark.skipif(not HAVE_SWTPM, reason="swtpm is not installed: devices get no TPM")
def test_vendor_ca_key_mode(tmp_path: Path) -> None:
    """The simulated TPM vendor's CA keys are 0600 in a 0700 folder, even under umask 000."""
    home = init(tmp_path / "home", umask=0)
    image = tmp_path / "image.bin"
    image.write_bytes(os.urandom(64 * 1024))
    sbom = write_sbom(tmp_path / "sbom.json")
    ok("release", "build", "--home", home, "--version", "1.0.0", "--image", image, "--sbom", sbom,
       umask=0)  # fmt: skip
    ok("release", "publish", "--home", home, "--version", "1.0.0", umask=0)
    ok("factory", "provision", "--home", home, "--out", tmp_path / "d", umask=0)
    vendor = home / "tpm-vendor"
    assert mode(vendor) == 0o700
    keys = [p for p in vendor.iterdir() if b"PRIVATE KEY" in p.read_bytes()]
    assert {p.name for p in keys} >= {"signkey.pem"}
    assert {p.name: mode(p) for p in keys} == {p.name: 0o600 for p in keys}
    (device,) = (tmp_path / "d").iterdir()
    assert writable_by_others(device / "tpm") == []


# --- Finding 3: the repository lock -------------------------------------------------------------


@pytest.fixture
def open_home() -> Iterator[Path]:
    """A home in a folder every user may traverse (as a real /var/lib home would be)."""
    base = Path(tempfile.mkdtemp(prefix="tf-files-"))
    try:
        base.chmod(0o755)
        yield init(base / "home")
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_repo_lock_private(open_home: Path) -> None:
    """Another local user can neither open nor hold the repository lock."""
    lock = open_home / "ota" / "repo" / ".lock"
    assert mode(lock.parent) == 0o700
    assert mode(lock) == 0o600
    attempt = subprocess.run(
        ["flock", "--nonblock", "--shared", str(lock), "true"],
        user=NOBODY,
        capture_output=True,
        text=True,
        timeout=GUARD_TIMEOUT_S,
        check=False,
    )
    assert attempt.returncode != 0, "user nobody could take the repository lock"
    assert "Permission denied" in attempt.stderr


def test_repo_lock_wait_bounded(open_home: Path) -> None:
    """A held lock makes ``ota refresh-timestamp`` fail with one line after lock_timeout_s."""
    config = open_home / "trustfleet.toml"
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("lock_timeout_s = 30.0", "lock_timeout_s = 0.5"), "utf-8")
    lock = open_home / "ota" / "repo" / ".lock"
    with hold_lock(lock):
        result = cli("ota", "refresh-timestamp", "--home", open_home)
    assert_one_line_refusal(result, exit_code=8, needle="stayed locked")
    ok("ota", "refresh-timestamp", "--home", open_home)  # free again: it works
