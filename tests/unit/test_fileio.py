"""Issue 9 §6: explicit modes, no output through links, and the trusted-path check (fileio)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from trustfleet.errors import Config
from trustfleet.fileio import check_trusted, make_dirs, write_atomic, write_new

NOBODY = 65534


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.mark.usefixtures("permissive_umask")
def test_umask_ignored_by_make_dirs_and_writes(tmp_path: Path) -> None:
    """Folders and files get the mode asked for, not 0777/0666 minus a permissive umask."""
    made = make_dirs(tmp_path / "a" / "b" / "c", mode=0o700)
    assert [_mode(p) for p in (tmp_path / "a", tmp_path / "a" / "b", made)] == [0o700] * 3
    write_atomic(tmp_path / "x" / "file", b"data")
    assert (_mode(tmp_path / "x"), _mode(tmp_path / "x" / "file")) == (0o755, 0o644)
    write_new(tmp_path / "secret", b"pin", mode=0o600)
    assert _mode(tmp_path / "secret") == 0o600


def test_symlink_output_write_new_refuses(tmp_path: Path) -> None:
    """write_new never creates a file through a (dangling) link."""
    link = tmp_path / "out"
    link.symlink_to(tmp_path / "victim")
    with pytest.raises(FileExistsError):
        write_new(link, b"x")
    assert not (tmp_path / "victim").exists()


def test_symlink_output_write_atomic_replaces_link(tmp_path: Path) -> None:
    """write_atomic replaces a link at the destination instead of writing through it."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    link = tmp_path / "out"
    link.symlink_to(victim)
    write_atomic(link, b"new")
    assert victim.read_bytes() == b"keep"
    assert not link.is_symlink()
    assert link.read_bytes() == b"new"


def test_symlink_folder_make_dirs_refuses(tmp_path: Path) -> None:
    """make_dirs does not accept a link where a folder should be."""
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(FileExistsError):
        make_dirs(tmp_path / "link")


def _file(tmp: Path, mode: int, owner: int | None = None) -> Path:
    path = tmp / "file"
    path.write_bytes(b"x")
    path.chmod(mode)
    if owner is not None:
        os.chown(path, owner, owner)
    return path


def _in_folder(tmp: Path, folder_mode: int) -> Path:
    folder = tmp / "folder"
    folder.mkdir()
    path = _file(folder, 0o644)
    folder.chmod(folder_mode)
    return path


def _sticky_foreign(tmp: Path) -> Path:
    folder = tmp / "sticky"
    folder.mkdir()
    folder.chmod(0o1777)
    os.chown(folder, NOBODY, NOBODY)
    return _file(folder, 0o644)


UNSAFE: list[tuple[str, Callable[[Path], Path]]] = [
    ("file_group_writable", lambda t: _file(t, 0o664)),
    ("file_other_writable", lambda t: _file(t, 0o646)),
    ("file_foreign_owner", lambda t: _file(t, 0o644, owner=NOBODY)),
    ("folder_group_writable", lambda t: _in_folder(t, 0o775)),
    ("folder_other_writable", lambda t: _in_folder(t, 0o757)),
    ("sticky_folder_not_root", _sticky_foreign),
]


@pytest.mark.parametrize("make", [pytest.param(m, id=i) for i, m in UNSAFE])
def test_unsafe_path_refused(tmp_path: Path, make: Callable[[Path], Path]) -> None:
    path = make(tmp_path)
    with pytest.raises(Config) as caught:
        check_trusted(path, what="the thing", parents=True)
    assert caught.value.code == "config.path.unsafe"
    assert caught.value.hint


SAFE: list[tuple[str, Callable[[Path], Path]]] = [
    ("file_0644", lambda t: _file(t, 0o644)),
    ("file_0600", lambda t: _file(t, 0o600)),
    ("folder_0755", lambda t: _in_folder(t, 0o755)),
]


@pytest.mark.parametrize("make", [pytest.param(m, id=i) for i, m in SAFE])
def test_safe_path_accepted(tmp_path: Path, make: Callable[[Path], Path]) -> None:
    check_trusted(make(tmp_path), what="the thing", parents=True)


def test_sticky_root_folder_accepted_above() -> None:
    """/tmp (1777, root) may be above a trusted path, as the sticky bit protects entries."""
    probe = Path("/tmp") / f"tf-fileio-{os.getpid()}"  # removed below
    probe.mkdir(mode=0o755)
    try:
        check_trusted(probe, what="the folder", parents=True)
    finally:
        probe.rmdir()


def test_missing_path_one_error(tmp_path: Path) -> None:
    with pytest.raises(Config) as caught:
        check_trusted(tmp_path / "nope", what="the PKCS#11 module")
    assert caught.value.code == "config.path.unreadable"


def test_sync_filesystem_flushes_the_folder_s_filesystem_and_refuses_a_file(tmp_path: Path) -> None:
    from trustfleet.fileio import sync_filesystem, write_atomic

    write_atomic(tmp_path / "tile", b"x" * 32, sync=False)
    sync_filesystem(tmp_path)  # syncfs(2) on the folder's filesystem: returns once done
    assert (tmp_path / "tile").read_bytes() == b"x" * 32
    with pytest.raises(NotADirectoryError):
        sync_filesystem(tmp_path / "tile")
