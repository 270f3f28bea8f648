"""Running the real ``trustfleet`` CLI for the file, mode and path tests (issue 9 §6).

:func:`cli` runs a command in its own session under a given umask, with a guard timeout after
which its process group is stopped (never anything by name); :func:`assert_one_line_refusal`
is what an operator's mistake must look like: a non-zero exit, one line with a hint on stderr,
no traceback.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from support.server import TRUSTFLEET
from trustfleet.sim.process import free_port, stop_group

__all__ = [
    "GUARD_TIMEOUT_S",
    "HAVE_SWTPM",
    "NOBODY",
    "Result",
    "assert_one_line_refusal",
    "cli",
    "init",
    "mode",
    "ok",
    "writable_by_others",
]

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
        stop_group(proc)  # type: ignore[arg-type]  # a text-mode Popen; stop_group never reads
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
