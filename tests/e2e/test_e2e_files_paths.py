"""Issue 9 §6, findings 2 and 4, through the real ``trustfleet`` CLI.

* ``server run`` and ``agent run`` refuse a configuration, home, device folder, SoftHSM2
  configuration or PKCS#11 module (and the folders above it) that someone else could change.
* ``--out``/``--home`` and every name that becomes a path are checked; outputs never follow
  links.

Commands that would start a service on the old code run in their own session with a guard
timeout (``support.cliguard``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.cliguard import NOBODY, assert_one_line_refusal, cli, init, ok
from support.server import make_csr_der, make_key, new_device_id
from trustfleet.sim.process import free_port

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
