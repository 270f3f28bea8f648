"""Issue 9 §6: files, permissions and paths, through the real ``trustfleet`` CLI.

* Every file and folder ``server init``, ``release build/publish`` and ``factory provision``
  write has an explicit mode, under any umask: no entry is writable by group or others.
* ``server run`` and ``agent run`` refuse a configuration, home, device folder, SoftHSM2
  configuration or PKCS#11 module (and the folders above it) that someone else could change.
* The OTA repository lock is private and waiting for it is bounded.
* ``--out`` and every name that becomes a path are checked; outputs never follow links.

Commands that would start a service on the old code run in their own session with a guard
timeout and are stopped by their process group (never by name).
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.server import TRUSTFLEET, free_port, make_csr_der, make_key, new_device_id

GUARD_TIMEOUT_S = int(os.environ.get("TF_TEST_GUARD_S", "120"))
"""A command that has not exited by then is stopped (the old code started the service).

Shorten it with TF_TEST_GUARD_S when checking that these tests fail on an older checkout.
Only the command's own process group is stopped: services it started in sessions of their own
(the old code's Mosquitto) must then be stopped by their pid."""
NOBODY = 65534
HAVE_SWTPM = all(shutil.which(tool) for tool in ("swtpm", "swtpm_setup"))


@dataclass(frozen=True)
class Result:
    """What a CLI run printed and how it ended (``timed_out``: it was still running)."""

    returncode: int
    stdout: str
    stderr: str
    timed_out: bool

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def cli(*args: str | os.PathLike[str], umask: int = 0o022) -> Result:
    """Run ``trustfleet ARGS`` in its own session under ``umask``; stop its group if it hangs."""
    proc = subprocess.Popen(
        [str(TRUSTFLEET), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        umask=umask,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        out, err = proc.communicate(timeout=GUARD_TIMEOUT_S)
        return Result(proc.returncode, out, err, timed_out=False)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return Result(proc.returncode, out, err, timed_out=True)


def ok(*args: str | os.PathLike[str], umask: int = 0o022) -> Result:
    result = cli(*args, umask=umask)
    assert result.returncode == 0, result.output
    return result


def assert_one_line_refusal(result: Result, *, exit_code: int, needle: str) -> None:
    """Non-zero exit, one line (on stderr) naming the problem with a hint, never a traceback."""
    assert not result.timed_out, "the command did not refuse: it kept running"
    assert result.returncode == exit_code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert needle in lines[0], lines[0]
    assert "Hint:" in lines[0], lines[0]


def init(home: Path, *, umask: int = 0o022) -> Path:
    ok(
        "server", "init", "--home", home, "--api-port", str(free_port()),
        "--mqtt-port", str(free_port()), "--json", umask=umask,
    )  # fmt: skip
    return home


def writable_by_others(*roots: Path) -> list[str]:
    """Every entry under ``roots`` (not following links) that group or others may write."""
    found = []
    for root in roots:
        for entry in [root, *root.rglob("*")]:
            info = entry.lstat()
            if stat.S_ISLNK(info.st_mode):
                continue
            if info.st_mode & 0o022:
                found.append(f"{stat.S_IMODE(info.st_mode):04o} {entry.relative_to(root.parent)}")
    return found


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


# --- Finding 1 and 5: explicit modes under any umask ------------------------------------------


@pytest.mark.parametrize("umask", [0o000, 0o002], ids=["umask-000", "umask-002"])
def test_umask_group_writable_tree(tmp_path: Path, umask: int) -> None:
    """server init, release build/publish and factory provision under a permissive umask."""
    home = init(tmp_path / "home", umask=umask)
    image = tmp_path / "image.bin"
    image.write_bytes(os.urandom(64 * 1024))
    ok("release", "build", "--home", home, "--model", "sim-v1", "--version", "1.0.0",
       "--image", image, umask=umask)  # fmt: skip
    ok("release", "publish", "--home", home, "--model", "sim-v1", "--version", "1.0.0",
       umask=umask)  # fmt: skip
    devices = tmp_path / "devices"
    ok("factory", "provision", "--home", home, "--out", devices, "--count", "1", umask=umask)

    assert writable_by_others(home, devices) == []
    for private in ("secrets", "tokens", "db", "ota/repo", "ota/staging"):
        assert mode(home / private) == 0o700, private
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
       "--image", image)  # fmt: skip
    staged = home / "ota" / "staging" / "sim-v1" / "1.0.0"
    assert [mode(p) for p in (staged.parent.parent, staged.parent, staged)] == [0o700] * 3
    assert mode(staged / "image.bin") == 0o600
    assert mode(staged / "release.json") == 0o600


@pytest.mark.skipif(not HAVE_SWTPM, reason="swtpm is not installed: devices get no TPM")
def test_vendor_ca_key_mode(tmp_path: Path) -> None:
    """The simulated TPM vendor's CA keys are 0600 in a 0700 folder, even under umask 000."""
    home = init(tmp_path / "home", umask=0)
    image = tmp_path / "image.bin"
    image.write_bytes(os.urandom(64 * 1024))
    ok("release", "build", "--home", home, "--version", "1.0.0", "--image", image, umask=0)
    ok("release", "publish", "--home", home, "--version", "1.0.0", umask=0)
    ok("factory", "provision", "--home", home, "--out", tmp_path / "d", umask=0)
    vendor = home / "tpm-vendor"
    assert mode(vendor) == 0o700
    keys = [p for p in vendor.iterdir() if b"PRIVATE KEY" in p.read_bytes()]
    assert {p.name for p in keys} >= {"signkey.pem"}
    assert {p.name: mode(p) for p in keys} == {p.name: 0o600 for p in keys}
    (device,) = (tmp_path / "d").iterdir()
    assert writable_by_others(device / "tpm") == []


# --- Finding 2: refuse to start on what others could change -----------------------------------


@dataclass(frozen=True)
class Fleet:
    """A pristine home and a device folder made once; each case works on copies."""

    home: Path
    device: Path


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    base = tmp_path_factory.mktemp("files-fleet")
    home = init(base / "home")
    ok("factory", "provision", "--home", home, "--out", base / "devices")
    (device,) = (base / "devices").iterdir()
    return Fleet(home=home, device=device)


def _module_copy(where: Path, *, folder_mode: int = 0o755, file_mode: int = 0o755) -> Path:
    """A copy of the SoftHSM2 module in ``where`` with the given modes."""
    from trustfleet.keystore import find_module

    where.mkdir(parents=True, exist_ok=True)
    module = where / "libsofthsm2.so"
    shutil.copyfile(find_module(), module)
    module.chmod(file_mode)
    where.chmod(folder_mode)
    return module


def _set_module(config: Path, module: Path, *, key: str) -> None:
    text = config.read_text(encoding="utf-8")
    lines = [f'module = "{module}"' if line.startswith("module = ") else line
             for line in text.splitlines()]  # fmt: skip
    assert any(line == f'module = "{module}"' for line in lines), key
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _link_config(home: Path, scratch: Path) -> None:
    """trustfleet.toml becomes a link to a (root-owned, 0644) file in a group-writable folder."""
    folder = scratch / "shared"
    folder.mkdir(parents=True)
    target = folder / "trustfleet.toml"
    (home / "trustfleet.toml").rename(target)
    (home / "trustfleet.toml").symlink_to(target)
    folder.chmod(0o775)


Tamper = Callable[[Path, Path], None]
"""Changes a copied home (or device folder) given it and a scratch folder."""

SERVER_CASES: list[tuple[str, Tamper, str]] = [
    ("config_group_writable", lambda h, s: (h / "trustfleet.toml").chmod(0o664), "writable"),
    ("config_other_writable", lambda h, s: (h / "trustfleet.toml").chmod(0o646), "writable"),
    ("config_foreign_owner",
     lambda h, s: os.chown(h / "trustfleet.toml", NOBODY, NOBODY), "owned by uid"),
    ("config_symlink_into_writable_folder", _link_config, "writable"),
    ("home_group_writable", lambda h, s: h.chmod(0o775), "writable"),
    ("home_foreign_owner", lambda h, s: os.chown(h, NOBODY, NOBODY), "owned by uid"),
    ("home_parent_other_writable", lambda h, s: h.parent.chmod(0o757), "writable"),
    ("softhsm_conf_group_writable",
     lambda h, s: (h / "tokens" / "softhsm2.conf").chmod(0o664), "writable"),
    ("module_group_writable_folder",
     lambda h, s: _set_module(h / "trustfleet.toml", _module_copy(s / "lib", folder_mode=0o775),
                              key="keystore"), "writable"),
    ("module_group_writable_grandparent",
     lambda h, s: (_set_module(h / "trustfleet.toml", _module_copy(s / "g" / "lib"),
                               key="keystore"), (s / "g").chmod(0o775)), "writable"),
    ("module_file_other_writable",
     lambda h, s: _set_module(h / "trustfleet.toml", _module_copy(s / "lib", file_mode=0o757),
                              key="keystore"), "writable"),
    ("module_foreign_owner",
     lambda h, s: (_set_module(h / "trustfleet.toml", m := _module_copy(s / "lib"),
                               key="keystore"), os.chown(m, NOBODY, NOBODY)), "owned by uid"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("tamper", "needle"),
    [pytest.param(t, n, id=i) for i, t, n in SERVER_CASES],
)
def test_server_refuses_unsafe_paths(
    fleet: Fleet, tmp_path: Path, tamper: Tamper, needle: str
) -> None:
    """``server run`` exits 3 with one line instead of loading what others could change."""
    parent = tmp_path / "parent"
    parent.mkdir(mode=0o755)
    home = parent / "home"
    shutil.copytree(fleet.home, home, symlinks=True)
    home.chmod(0o755)
    tamper(home, tmp_path / "scratch")
    result = cli("server", "run", "--home", home)
    assert_one_line_refusal(result, exit_code=3, needle=needle)
    assert "refusing to use" in result.output


DEVICE_CASES: list[tuple[str, Tamper, str]] = [
    ("device_folder_other_writable", lambda d, s: d.chmod(0o702), "writable"),
    ("device_folder_foreign_owner", lambda d, s: os.chown(d, NOBODY, NOBODY), "owned by uid"),
    ("device_toml_group_writable", lambda d, s: (d / "device.toml").chmod(0o664), "writable"),
    ("device_softhsm_conf_other_writable",
     lambda d, s: (d / "softhsm2.conf").chmod(0o646), "writable"),
    ("device_module_group_writable_folder",
     lambda d, s: _set_module(d / "device.toml", _module_copy(s / "lib", folder_mode=0o775),
                              key="identity"), "writable"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("tamper", "needle"),
    [pytest.param(t, n, id=i) for i, t, n in DEVICE_CASES],
)
def test_agent_refuses_unsafe_paths(
    fleet: Fleet, tmp_path: Path, tamper: Tamper, needle: str
) -> None:
    """``agent run`` exits 3 with one line instead of loading what others could change."""
    device = tmp_path / fleet.device.name
    shutil.copytree(fleet.device, device, symlinks=True)
    device.chmod(0o700)
    tamper(device, tmp_path / "scratch")
    result = cli("agent", "run", "--device", device)
    assert_one_line_refusal(result, exit_code=3, needle=needle)


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
    holder = subprocess.Popen(
        ["flock", "--exclusive", str(lock), "sleep", "600"], start_new_session=True
    )
    try:
        _wait_held(lock)
        result = cli("ota", "refresh-timestamp", "--home", open_home)
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
    assert_one_line_refusal(result, exit_code=8, needle="stayed locked")
    ok("ota", "refresh-timestamp", "--home", open_home)  # free again: it works


def _wait_held(lock: Path) -> None:
    for _ in range(400):
        probe = subprocess.run(["flock", "--nonblock", str(lock), "true"], check=False)
        if probe.returncode != 0:
            return
        time.sleep(0.05)
    raise AssertionError("the holder never took the lock")


# --- Finding 4: names that become paths, and outputs ------------------------------------------


def _existing_file(tmp: Path) -> Path:
    target = tmp / "a-file"
    target.write_text("keep me\n")
    return target


def _link_to_folder(tmp: Path) -> Path:
    (tmp / "elsewhere").mkdir()
    link = tmp / "link"
    link.symlink_to(tmp / "elsewhere")
    return link


def _dangling_link(tmp: Path) -> Path:
    link = tmp / "dangling"
    link.symlink_to(tmp / "victim")
    return link


OUT_CASES: list[tuple[str, Callable[[Path], Path], str]] = [
    ("out_existing_file", _existing_file, "not a folder"),
    ("out_proc_nope", lambda tmp: Path("/proc/nope"), "cannot be created"),
    ("out_symlink_to_folder", _link_to_folder, "symbolic link"),
    ("out_dangling_symlink", _dangling_link, "symbolic link"),
]


@pytest.mark.parametrize(
    ("make_out", "needle"),
    [pytest.param(m, n, id=i) for i, m, n in OUT_CASES],
)
def test_provision_out_refused(
    fleet: Fleet, tmp_path: Path, make_out: Callable[[Path], Path], needle: str
) -> None:
    """``factory provision --out`` that is a file, impossible or a link: one line, exit 2."""
    out = make_out(tmp_path)
    result = cli("factory", "provision", "--home", fleet.home, "--out", out)
    assert_one_line_refusal(result, exit_code=2, needle=needle)
    assert not (tmp_path / "victim").exists()
    if (tmp_path / "elsewhere").exists():
        assert list((tmp_path / "elsewhere").iterdir()) == []


INIT_HOME_CASES: list[tuple[str, Callable[[Path], Path], str]] = [
    ("home_existing_file", _existing_file, "not a folder"),
    ("home_symlink_to_folder", _link_to_folder, "symbolic link"),
    ("home_dangling_symlink", _dangling_link, "symbolic link"),
    ("home_proc_nope", lambda tmp: Path("/proc/nope"), "cannot create"),
]


@pytest.mark.parametrize(
    ("make_home", "needle"),
    [pytest.param(m, n, id=i) for i, m, n in INIT_HOME_CASES],
)
def test_init_home_path_refused(
    tmp_path: Path, make_home: Callable[[Path], Path], needle: str
) -> None:
    """``server init --home`` that is a file, a link or impossible: one line, exit 2."""
    home = make_home(tmp_path)
    result = cli("server", "init", "--home", home, "--api-port", str(free_port()))
    assert_one_line_refusal(result, exit_code=2, needle=needle)
    assert not (tmp_path / "victim").exists()
    if (tmp_path / "elsewhere").exists():
        assert list((tmp_path / "elsewhere").iterdir()) == []


def test_sign_csr_out_dangling_symlink(fleet: Fleet, tmp_path: Path) -> None:
    """``factory sign-csr --out`` never writes through a (dangling) link."""
    key = make_key(tmp_path / "idevid.key")
    csr = tmp_path / "idevid.csr"
    csr.write_bytes(make_csr_der(key, cn=new_device_id("files")))
    out = _dangling_link(tmp_path)
    result = cli("factory", "sign-csr", "--home", fleet.home, "--csr", csr, "--out", out)
    assert_one_line_refusal(result, exit_code=2, needle="exists already")
    assert not (tmp_path / "victim").exists()


BAD_NAMES: list[tuple[str, list[str]]] = [
    ("model_dotdot", ["--model", ".."]),
    ("model_dot", ["--model", "."]),
    ("model_leading_dot", ["--model", ".hidden"]),
    ("model_slash", ["--model", "a/b"]),
    ("model_traversal", ["--model", "../../etc"]),
    ("model_nul", ["--model", "a\x01b"]),
    ("model_space", ["--model", "a b"]),
    ("model_unicode", ["--model", "modèle"]),
    ("model_too_long", ["--model", "m" * 65]),
    ("version_traversal", ["--version", "../1.0.0"]),
    ("version_slash", ["--version", "1.0/0"]),
]


@pytest.mark.parametrize("args", [pytest.param(a, id=i) for i, a in BAD_NAMES])
def test_release_build_bad_names(fleet: Fleet, tmp_path: Path, args: list[str]) -> None:
    """``release build`` refuses a model or version that would make a path: nothing written."""
    home = tmp_path / "home"
    shutil.copytree(fleet.home, home, symlinks=True)
    image = tmp_path / "image.bin"
    image.write_bytes(b"\0" * 4096)
    before = sorted(p.relative_to(home) for p in home.rglob("*") if "db" not in p.parts)
    options = {"--model": "sim-v1", "--version": "9.9.9"}
    options.update(dict(zip(args[::2], args[1::2], strict=True)))
    flat = [item for pair in options.items() for item in pair]
    result = cli("release", "build", "--home", home, "--image", image, *flat)
    assert_one_line_refusal(result, exit_code=2, needle="not")
    after = sorted(p.relative_to(home) for p in home.rglob("*") if "db" not in p.parts)
    assert after == before


@pytest.mark.parametrize("model", ["..", ".hidden", "a/b"], ids=["dotdot", "leading_dot", "slash"])
def test_provision_bad_model(fleet: Fleet, tmp_path: Path, model: str) -> None:
    """``factory provision --model`` is checked like a release's model."""
    result = cli("factory", "provision", "--home", fleet.home, "--out", tmp_path / "d",
                 "--model", model)  # fmt: skip
    assert_one_line_refusal(result, exit_code=2, needle="is not valid")
    assert not (tmp_path / "d").exists() or list((tmp_path / "d").iterdir()) == []
