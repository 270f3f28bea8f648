"""``trustfleet.processes``: the exclusive lock file and a pid's identity (real processes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.waiting import eventually
from trustfleet.errors import Config, Conflict
from trustfleet.processes import hold_exclusive, identity_of, names_folder

_HOLD = """
import os, sys, time
from pathlib import Path
from trustfleet.processes import hold_exclusive
lock = hold_exclusive(Path(sys.argv[1]), what="it", hint="h", code="c", env_name="TF_T_LOCK")
if sys.argv[2] == "exec":
    lock.keep_across_exec("TF_T_LOCK")
    os.execv(sys.executable, [sys.executable, "-c", sys.argv[3], sys.argv[1], "hold", ""])
print("held", flush=True)
sys.stdin.read()
"""


def _holder(path: Path, mode: str = "hold") -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(path), mode, _HOLD],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def _take(path: Path) -> None:
    hold_exclusive(path, what="the folder X", hint="stop it", code="x.locked").release()


@pytest.mark.parametrize("mode", ["hold", "exec"], ids=["held", "kept_across_exec"])
def test_second_holder_is_refused_with_the_holder_pid(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "x.lock"
    holder = _holder(path, mode)
    try:
        with pytest.raises(Conflict) as caught:
            _take(path)
        assert caught.value.code == "x.locked"
        assert f"pid {holder.pid}" in caught.value.one_line()  # exec keeps the pid
        assert path.stat().st_mode & 0o777 == 0o600
    finally:
        holder.communicate("", timeout=30)
    _take(path)  # the holder's death released it: a lock never goes stale


def test_lock_file_never_followed_through_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    (tmp_path / "x.lock").symlink_to(target)
    with pytest.raises(Config):
        _take(tmp_path / "x.lock")
    assert target.read_text() == "keep"


def test_identity_tells_a_reused_pid_apart(tmp_path: Path) -> None:
    me = identity_of(os.getpid())
    assert me is not None and me.alive()
    assert not type(me)(pid=me.pid, start_ticks=me.start_ticks + 1).alive()
    proc = subprocess.Popen(
        ["sleep", "30"], env={**os.environ, "TRUSTFLEET_OWNER_DIR": str(tmp_path)}
    )
    try:
        # Popen may return before /proc shows the new image (vfork): wait for it, bounded.
        eventually(lambda: names_folder(proc.pid, tmp_path), timeout_s=10, poll_s=0.02)
        assert names_folder(proc.pid, tmp_path)
        assert not names_folder(proc.pid, tmp_path / "other")
    finally:
        proc.kill()
        proc.wait()


_WATCHER = """
import sys, time
from trustfleet.processes import die_with_process
die_with_process(int(sys.argv[1]))
print("watching", flush=True)
time.sleep(120)
"""


def _watcher(pid: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _WATCHER, str(pid)], stdout=subprocess.PIPE, text=True
    )


def test_die_with_process_follows_a_process_that_is_not_the_parent() -> None:
    """The server's children watch the supervisor, not their parent (the fork server)."""
    watched = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    watcher = _watcher(watched.pid)
    try:
        assert watcher.stdout is not None and watcher.stdout.readline().strip() == "watching"
        assert watcher.poll() is None
        watched.kill()
        watched.wait()
        assert watcher.wait(timeout=30) == -9
    finally:
        for proc in (watched, watcher):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_die_with_process_of_a_gone_pid_exits_at_once() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    watcher = _watcher(gone.pid)
    assert watcher.wait(timeout=30) == 1
