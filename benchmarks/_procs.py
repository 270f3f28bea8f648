"""What every benchmark needs besides the harness's processes (`trustfleet.sim.process`):
a deadline, the machine it ran on, and the tests' support package on the import path.

Benchmarks share their independent clients with the tests (``tests/support``, e.g.
``support.httpsprobe``); importing this module makes ``support`` importable.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import shutil
import signal
import sys
from collections.abc import Callable, Collection, Iterable, Iterator
from pathlib import Path
from typing import Any

from trustfleet.sim.process import ManagedProcess

__all__ = [
    "TRUSTFLEET",
    "benchmark_parser",
    "cell",
    "cpu_model",
    "drop_workdir",
    "emit",
    "figures_table",
    "interrupts_and_deadline",
    "params",
    "progress",
    "raise_nofile",
    "report_console",
    "serve_home",
]

TRUSTFLEET = Path(sys.executable).parent / "trustfleet"

_TESTS = str(Path(__file__).resolve().parents[1] / "tests")
if _TESTS not in sys.path:
    sys.path.append(_TESTS)


@contextlib.contextmanager
def interrupts_and_deadline(max_time: float) -> Iterator[None]:
    """SIGTERM and the overall deadline (SIGALRM) both end the run like Ctrl-C."""

    def handler(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    old_term = signal.signal(signal.SIGTERM, handler)
    old_alrm = signal.signal(signal.SIGALRM, handler)
    signal.alarm(math.ceil(max_time))
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGALRM, old_alrm)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("" when unknown)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return ""


def benchmark_parser(doc: str | None, *, keep: bool = False) -> argparse.ArgumentParser:
    """A benchmark's argument parser: its docstring's first line, ``--json`` and maybe ``--keep``.

    Args:
        doc: The benchmark module's docstring.
        keep: Whether the run has a temporary directory that ``--keep`` keeps.
    """
    ap = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    if keep:
        ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    return ap


def cell(value: float | None, spec: str) -> str:
    """A figure for a table cell, formatted with ``spec``; ``-`` when there is none."""
    return "-" if value is None else format(value, spec)


def params(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The named options of a run, for its figures' document."""
    return {name: getattr(args, name) for name in names}


def figures_table(
    columns: Iterable[str], *, left: Collection[str], title: str | None = None
) -> Any:
    """A rich ``Table`` with these columns: the ``left`` ones left-aligned, the figures right.

    Args:
        columns: The column headers, in order.
        left: The headers of the label columns (left-aligned); every other column is a figure.
        title: The table's title, if any.
    """
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="left" if col in left else "right")
    return table


def progress(*, quiet: bool) -> Callable[[str], None]:
    """Where a benchmark's progress lines go: stderr, or nowhere when ``quiet`` (--json)."""
    if quiet:
        return lambda _line: None
    return lambda line: print(line, file=sys.stderr, flush=True)


def emit(doc: Any, *, as_json: bool, show: Callable[[Any], None]) -> None:
    """Print the figures: one JSON document on stdout, or ``show``'s presentation of them."""
    if as_json:
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        show(doc)


def report_console(title: str, details: str, *, width: int | None = None) -> Any:
    """A rich ``Console`` on stdout that has printed a report's header: bold title, details.

    Args:
        title: What ran, e.g. ``"Delta benchmark"``.
        details: The run's parameters and machine, one sentence.
        width: The console width; the terminal's when None.
    """
    from rich.console import Console

    console = Console(width=width)
    console.print(f"[bold]{title}[/] — {details}")
    return console


def drop_workdir(tmp: Path, *, keep: bool) -> None:
    """Delete a run's temporary folder, or say where it was kept (--keep)."""
    if keep:
        print(f"kept {tmp}", file=sys.stderr)
    else:
        shutil.rmtree(tmp, ignore_errors=True)


def raise_nofile(wanted: int) -> int:
    """Raise this process's RLIMIT_NOFILE to ``wanted`` (the hard limit too when privileged;
    children inherit it); the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))
        return wanted
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def serve_home(
    home: Path,
    *,
    ready: Callable[[], bool],
    timeout_s: float,
    args: tuple[str, ...] = (),
    log: Path = Path(os.devnull),
) -> ManagedProcess:
    """``trustfleet server run --home HOME ARGS`` in its own session, once ``ready`` says it
    serves (its output to ``log``); stop it with :meth:`ManagedProcess.stop`."""
    server = ManagedProcess(
        [TRUSTFLEET, "server", "run", "--home", home, *args],
        log=log,
        ready=ready,
        name="trustfleet server run",
    )
    return server.start(timeout_s=timeout_s)
