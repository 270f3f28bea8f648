"""Mutation testing of the trust cores: ``make mutation`` (docs/mutation.md).

For each module in ``targets.toml``: run its tests once with the module unchanged (they must
pass; the lines they execute are recorded), then for every mutant (``mutator.py``) run the same
tests in a forked child that imports the mutated source in place of the module. A mutant is
*killed* when the tests fail or time out, *survived* when they pass, *not covered* when no test
executes its lines (a survivor that was not run). Mutants that change only text (by a rule) or
that a reviewer marked equivalent in ``equivalents.toml`` are listed but not scored:

    score = killed / (killed + survived + not covered)

Usage: ``python tests/mutation/run.py [--fast] [--module SUBSTRING] [--min-score 90] [--json]
[--report docs/mutation.md] [--list] [--jobs N]``
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.abc
import importlib.util
import json
import os
import signal
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(ROOT / "src"))  # this checkout's code, also in a git worktree

from mutator import Mutant, TextRules, mutants  # noqa: E402

# Libraries the trust cores import, loaded once in the parent so that every forked child
# starts with them (the children import only trustfleet and the tests afresh).
_PRELOAD = (
    "pytest",
    "hypothesis",
    "cryptography.x509",
    "cryptography.hazmat.primitives.asymmetric.ec",
    "cryptography.hazmat.primitives.asymmetric.rsa",
    "cryptography.x509.ocsp",
    "pydantic",
    "asn1crypto.core",
    "sqlalchemy",
    "tuf.ngclient",
    "securesystemslib.signer",
)


@dataclass
class Target:
    """One module under mutation and the tests that must kill its mutants."""

    path: str
    tests: list[str]
    fast: bool = False

    @property
    def module(self) -> str:
        """The module's import name."""
        rel = Path(self.path).relative_to("src").with_suffix("")
        return ".".join(rel.parts)


@dataclass
class Outcome:
    """What happened to one mutant."""

    key: str
    line: int
    operator: str
    original: str
    replacement: str
    status: str  # killed, timeout, survived, not-covered, excluded, equivalent, invalid
    reason: str = ""


@dataclass
class ModuleReport:
    """The outcome of every mutant of one module."""

    path: str
    outcomes: list[Outcome] = field(default_factory=list)
    baseline_s: float = 0.0
    elapsed_s: float = 0.0

    def count(self, *statuses: str) -> int:
        """How many mutants ended in one of ``statuses``."""
        return sum(1 for o in self.outcomes if o.status in statuses)

    @property
    def scored(self) -> int:
        """Behaviour-changing mutants: the score's denominator."""
        return self.count("killed", "timeout", "survived", "not-covered")

    @property
    def score(self) -> float:
        """Killed share of the behaviour-changing mutants, in percent."""
        killed = self.count("killed", "timeout")
        return 100.0 * killed / self.scored if self.scored else 100.0

    def figures(self) -> dict[str, Any]:
        """The counts every report shows, in the report's column order."""
        return {
            "module": self.path,
            "mutants": len(self.outcomes),
            "excluded": self.count("excluded"),
            "equivalent": self.count("equivalent"),
            "scored": self.scored,
            "killed": self.count("killed", "timeout"),
            "survived": self.count("survived"),
            "not_covered": self.count("not-covered"),
            "score": round(self.score, 1),
            "elapsed_s": round(self.elapsed_s, 1),
        }


# --- configuration ---------------------------------------------------------------------------


def load_targets(path: Path = HERE / "targets.toml") -> tuple[list[Target], TextRules]:
    """The modules to mutate and the text rules, from ``targets.toml``."""
    data = tomllib.loads(path.read_text())
    text = data.get("text", {})
    rules = TextRules(
        calls={name: tuple(pos) for name, pos in text.get("calls", {}).items()},
        keywords=frozenset(text.get("keywords", ["message", "hint"])),
    )
    targets = [Target(**entry) for entry in data["module"]]
    return targets, rules


def load_equivalents(path: Path = HERE / "equivalents.toml") -> dict[tuple[str, str], str]:
    """Reviewed equivalent mutants: (module path, mutant key) → the reason."""
    if not path.exists():
        return {}
    data = tomllib.loads(path.read_text())
    return {(e["module"], e["key"]): e["reason"] for e in data.get("equivalent", [])}


# --- the child: run the tests with the mutated module ------------------------------------------


class _MutatedSource(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves ``source`` as the module ``name`` (compiled in memory, no bytecode written)."""

    def __init__(self, name: str, path: str, source: str) -> None:
        self.name, self.path, self.source = name, path, source

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> Any:
        if fullname != self.name:
            return None
        spec = importlib.util.spec_from_loader(fullname, self, origin=self.path)
        assert spec is not None
        spec.has_location = True
        if self.path.endswith("__init__.py"):
            spec.submodule_search_locations = [str(Path(self.path).parent)]
        return spec

    def create_module(self, spec: Any) -> None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        module.__file__ = self.path
        exec(compile(self.source, self.path, "exec"), module.__dict__)  # noqa: S102


def _pytest_args(target: Target) -> list[str]:
    return [
        *target.tests,
        "-x",
        "-q",
        "--no-header",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:xdist",
        "-o",
        "addopts=",
        "--timeout=120",
        "--hypothesis-seed=0",
    ]


def _run_child(target: Target, source: str | None, trace_to: str | None = None) -> int:
    """Fork a child that runs the target's tests; returns its pid (the parent goes on)."""
    pid = os.fork()
    if pid:
        return pid
    code = 3
    try:
        os.setpgid(0, 0)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        sys.dont_write_bytecode = True
        path = str(ROOT / target.path)
        if source is not None:
            sys.meta_path.insert(0, _MutatedSource(target.module, path, source))
        import pytest

        lines: set[int] = set()
        if trace_to is not None:
            _trace_lines(path, lines)
        code = int(pytest.main(_pytest_args(target)))
        if trace_to is not None:
            sys.settrace(None)
            Path(trace_to).write_text(json.dumps(sorted(lines)))
    except BaseException:
        code = 4
    finally:
        os._exit(code)


def _trace_lines(path: str, lines: set[int]) -> None:
    import threading

    def local(frame: FrameType, event: str, arg: object) -> Any:
        if event == "line":
            lines.add(frame.f_lineno)
        return local

    def tracer(frame: FrameType, event: str, arg: object) -> Any:
        if frame.f_code.co_filename == path:
            lines.add(frame.f_lineno)
            return local
        return None

    sys.settrace(tracer)
    threading.settrace(tracer)


def _poll(pid: int, deadline: float) -> str | None:
    """``exit:N`` once the child ended, ``timeout`` (child killed) past ``deadline``, else None."""
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        return f"exit:{os.waitstatus_to_exitcode(status)}"
    if time.monotonic() > deadline:
        _kill(pid)
        return "timeout"
    return None


def _wait(pid: int, timeout_s: float) -> str:
    """What :func:`_poll` says once the child ended or ran out of time."""
    deadline = time.monotonic() + timeout_s
    while (state := _poll(pid, deadline)) is None:
        time.sleep(0.02)
    return state


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


# --- the parent ------------------------------------------------------------------------------


def _baseline(target: Target) -> tuple[float, set[int]]:
    with tempfile.NamedTemporaryFile(suffix=".json") as trace:
        start = time.monotonic()
        state = _wait(_run_child(target, None, trace_to=trace.name), 900)
        elapsed = time.monotonic() - start
        if state != "exit:0":
            raise SystemExit(
                f"error: the tests of {target.path} fail without any mutant ({state}). "
                f"Hint: run pytest {' '.join(target.tests)}"
            )
        lines = set(json.loads(Path(trace.name).read_text() or "[]"))
    return elapsed, lines


def mutate_module(
    target: Target,
    rules: TextRules,
    equivalents: dict[tuple[str, str], str],
    *,
    jobs: int,
    progress: Any = None,
) -> ModuleReport:
    """Run every mutant of one module; returns the report."""
    report = ModuleReport(target.path)
    started = time.monotonic()
    source = (ROOT / target.path).read_text()
    baseline_s, covered = _baseline(target)
    report.baseline_s = baseline_s
    timeout_s = 3 * baseline_s + 10
    pending: list[tuple[Mutant, str]] = []
    for m in mutants(source, rules):
        outcome = Outcome(m.key, m.line, m.operator, m.original, m.replacement, "")
        report.outcomes.append(outcome)
        reason = equivalents.get((target.path, m.key))
        mutated = m.apply(source)
        try:
            compile(mutated, target.path, "exec")
        except SyntaxError as exc:
            outcome.status, outcome.reason = "invalid", str(exc)
        else:
            if m.rule is not None:
                outcome.status, outcome.reason = "excluded", m.rule
            elif reason is not None:
                outcome.status, outcome.reason = "equivalent", reason
            elif not covered.intersection(range(m.line, m.end_line + 1)):
                outcome.status = "not-covered"
            else:
                pending.append((m, mutated))
    by_key = {o.key: o for o in report.outcomes}
    task = progress.add_task(target.path, total=len(pending)) if progress else None
    running: dict[int, tuple[Mutant, float]] = {}
    queue = list(pending)
    while queue or running:
        while queue and len(running) < jobs:
            m, mutated = queue.pop(0)
            running[_run_child(target, mutated)] = (m, time.monotonic() + timeout_s)
        finished = []
        for pid, (m, deadline) in running.items():
            state = _poll(pid, deadline)
            if state is None:
                continue
            by_key[m.key].status = {"exit:0": "survived", "timeout": "timeout"}.get(state, "killed")
            finished.append(pid)
            if progress:
                progress.advance(task)
        for pid in finished:
            del running[pid]
        if not finished:
            time.sleep(0.02)
    report.elapsed_s = time.monotonic() - started
    return report


def _select(targets: list[Target], *, fast: bool, names: Sequence[str]) -> list[Target]:
    chosen = [t for t in targets if (t.fast or not fast)]
    if names:
        chosen = [t for t in chosen if any(n in t.path for n in names)]
    return chosen


def _markdown(reports: Sequence[ModuleReport], command: str) -> str:
    out = [
        "| module | mutants | text only | equivalent | scored | killed | survived "
        "| not covered | score | time |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in reports:
        f = r.figures()
        cells = [f["module"].removeprefix("src/trustfleet/")]
        cells += [str(f[k]) for k in _COUNTS]
        cells += [f"{f['score']:.1f} %", f"{f['elapsed_s']:.0f} s"]
        out.append("| " + " | ".join(cells) + " |")
    out += ["", f"Made by `{command}`.", ""]
    survivors = [(r, o) for r in reports for o in r.outcomes if o.status in SURVIVING]
    if survivors:
        out += ["### Survivors", ""]
        for r, o in survivors:
            out.append(f"- `{r.path}:{o.line}` {o.status}: `{o.key}`")
    return "\n".join(out) + "\n"


SURVIVING = ("survived", "not-covered")
_COUNTS = ("mutants", "excluded", "equivalent", "scored", "killed", "survived", "not_covered")
_BEGIN, _END = "<!-- mutation report -->", "<!-- end of mutation report -->"


def _write_report(path: Path, table: str) -> None:
    """Put the table between the report markers of ``path`` (or make the file)."""
    text = path.read_text() if path.exists() else f"{_BEGIN}\n{_END}\n"
    if _BEGIN not in text or _END not in text:
        text += f"\n{_BEGIN}\n{_END}\n"
    head, rest = text.split(_BEGIN, 1)
    _, tail = rest.split(_END, 1)
    path.write_text(f"{head}{_BEGIN}\n{table}{_END}{tail}")


def _iter_json(reports: Sequence[ModuleReport]) -> Iterator[dict[str, Any]]:
    for r in reports:
        yield {
            **r.figures(),
            "invalid": r.count("invalid"),
            "baseline_s": round(r.baseline_s, 2),
            "survivors": [asdict(o) for o in r.outcomes if o.status in SURVIVING],
        }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="only the modules marked fast")
    parser.add_argument("--module", action="append", default=[], help="path substring")
    parser.add_argument("--min-score", type=float, default=None, help="fail below (percent)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--report", type=Path, help="write the markdown table here")
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    targets, rules = load_targets()
    chosen = _select(targets, fast=args.fast, names=args.module)
    if not chosen:
        print("error: no module matches. Hint: see tests/mutation/targets.toml", file=sys.stderr)
        return 2
    equivalents = load_equivalents()
    if args.list:
        for t in chosen:
            for m in mutants((ROOT / t.path).read_text(), rules):
                mark = m.rule or (equivalents.get((t.path, m.key)) and "equivalent") or ""
                print(f"{t.path}:{m.line}\t{m.key}\t{mark}")
        return 0
    for name in _PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
    from rich.table import Table

    console = Console(stderr=args.json, width=None if sys.stdout.isatty() else 150)
    reports = []
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=args.json,
    ) as progress:
        for t in chosen:
            report = mutate_module(t, rules, equivalents, jobs=args.jobs, progress=progress)
            reports.append(report)
            if not console.is_terminal and not args.json:  # a log: one line per module
                console.print(
                    f"{t.path}: {report.count('killed', 'timeout')}/{report.scored} killed "
                    f"({report.score:.1f} %) in {report.elapsed_s:.0f} s",
                    markup=False,
                    soft_wrap=True,
                )
    command = "python tests/mutation/run.py " + " ".join(argv or sys.argv[1:])
    if args.report:
        _write_report(args.report, _markdown(reports, command.strip()))
    if args.json:
        print(json.dumps(list(_iter_json(reports)), indent=2))
    else:
        table = Table("module", "mutants", "text", "equiv", "scored", "killed", "survived",
                      "uncovered", "score")  # fmt: skip
        for r in reports:
            f = r.figures()
            table.add_row(
                f["module"].removeprefix("src/trustfleet/"),
                *(str(f[k]) for k in _COUNTS),
                f"{f['score']:.1f} %",
            )
        console.print(table)
        for r in reports:
            for o in r.outcomes:
                if o.status in SURVIVING:
                    console.print(
                        f"{r.path}:{o.line} {o.status}: {o.key}", markup=False, soft_wrap=True
                    )
    low = [r for r in reports if args.min_score is not None and r.score < args.min_score]
    if low:
        names = ", ".join(f"{r.path} {r.score:.1f} %" for r in low)
        print(f"error: mutation score below {args.min_score:g} %: {names}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
