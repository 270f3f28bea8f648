"""The harness's managed process: readiness, log, stop of the whole group by pid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from trustfleet.errors import Unavailable
from trustfleet.sim.process import (
    ManagedProcess,
    free_port,
    group_alive,
    port_open,
    stop_pid_group,
    wait_until,
)

SERVE = """
import socket, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
print("child", child.pid, flush=True)
s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
print("serving", flush=True)
time.sleep(600)
"""

IGNORE_TERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('up', flush=True); time.sleep(600)"
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_ready_when_the_port_accepts_and_stop_takes_the_whole_group(tmp_path: Path) -> None:
    port = free_port()
    proc = ManagedProcess(
        [sys.executable, "-c", SERVE, str(port)],
        log=tmp_path / "serve.log",
        ready=lambda: port_open(port),
        name="serve",
    )
    with proc:
        assert proc.running and port_open(port)
        grandchild = int(proc.log_text().split()[1])
        assert _alive(grandchild)
    assert not proc.running
    wait_until(lambda: not _alive(grandchild), timeout_s=10, what="the grandchild gone")
    assert "serving" in proc.log_text()


def test_a_child_that_exits_before_ready_is_an_error_with_its_last_line(tmp_path: Path) -> None:
    proc = ManagedProcess(
        [sys.executable, "-c", "print('error: no such home'); raise SystemExit(2)"],
        log=tmp_path / "fail.log",
        ready=lambda: False,
        name="failing",
    )
    with pytest.raises(Unavailable, match="failing exited with 2: error: no such home"):
        proc.start(timeout_s=30)


def test_sigterm_ignored_means_sigkill_after_the_bound(tmp_path: Path) -> None:
    proc = ManagedProcess(
        [sys.executable, "-c", IGNORE_TERM],
        log=tmp_path / "stubborn.log",
        ready=lambda: "up" in (tmp_path / "stubborn.log").read_text(),
    )
    proc.start(timeout_s=30)
    assert proc.stop(timeout_s=0.5) == -signal.SIGKILL


def test_wait_until_returns_the_value_or_names_what_it_waited_for() -> None:
    assert wait_until(lambda: 42, timeout_s=1, what="x") == 42
    with pytest.raises(Unavailable, match="the answer: not reached"):
        wait_until(lambda: None, timeout_s=0.1, what="the answer")


LEAVE_A_GROUP = """
import subprocess, sys
child = subprocess.Popen(
    [sys.executable, "-c", "import subprocess, sys, time; "
     "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); time.sleep(600)"],
    start_new_session=True,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
)
print(child.pid, flush=True)
"""


def test_stop_pid_group_stops_a_group_this_process_did_not_start() -> None:
    # A process that leaves a session of two behind (like `demo --keep`) and exits.
    out = subprocess.run(
        [sys.executable, "-c", LEAVE_A_GROUP],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    pgid = int(out.stdout)
    wait_until(lambda: len(_group_members(pgid)) == 2, timeout_s=30, what="the group of two")
    assert group_alive(pgid)
    assert stop_pid_group(pgid, timeout_s=10)
    assert not group_alive(pgid)
    assert stop_pid_group(pgid, timeout_s=1)  # gone already: fine


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    members.append(int(entry.name))
            except ProcessLookupError:
                continue
    return members
