"""``trustfleet monitor …``: evaluate detection against scenarios, list scenarios, check rules."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from trustfleet.cli._common import JsonOpt, console, emit_json, interruptible
from trustfleet.errors import InvalidInput

if TYPE_CHECKING:
    from trustfleet.monitoring.evaluate import Evaluation
    from trustfleet.monitoring.records import Detector
    from trustfleet.monitoring.scenario import Scenario

__all__ = ["app", "scenario_option"]

app = typer.Typer(
    help="Security monitoring: evaluate detection against scenarios, list them, check rules.",
    no_args_is_help=True,
)

MAX_FILE_BYTES: Final = 256 * 1024
"""Largest scenario or rules file read (the scenario reader's own bound)."""
TARGETS_MISSED_EXIT_CODE: Final = 1

_EVALUATE_HELP = (
    "Run the detection pipeline over a scenario in simulated time and report per attack class "
    "the recall, time to detect (median, p95) and false alarms per 1,000 device-hours of normal "
    "time after learning. Exit code 0 when every target is met (recall >= 0.95 on each class, "
    "<= 1 false alarm per 1,000 device-hours), 1 when one is missed, 2 for a bad input."
)


def _read_text(path: Path, *, what: str, option: str) -> str:
    """A file's text, bounded; a missing or wrong path is one clear error."""
    if not path.exists():
        raise InvalidInput(
            f"no {what} file {path}", hint=f"check the path given to {option}",
            code=f"monitor.{what}.missing",
        )  # fmt: skip
    if not path.is_file():
        raise InvalidInput(
            f"{path} is not a regular file", hint=f"give {option} a {what} file (TOML)",
            code=f"monitor.{what}.missing",
        )  # fmt: skip
    with path.open("rb") as handle:
        data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise InvalidInput(
            f"{path} is larger than {MAX_FILE_BYTES} bytes", hint=f"give {option} a smaller file",
            code=f"monitor.{what}.invalid",
        )  # fmt: skip
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"{path} is not UTF-8 text", hint=f"give {option} a TOML file",
            code=f"monitor.{what}.invalid",
        ) from exc  # fmt: skip


def scenario_option(name_or_file: str) -> Scenario:
    """The scenario ``--scenario`` names: a built-in name, or a TOML file read bounded.

    Raises:
        InvalidInput: No such built-in or file, or the file is too large, not UTF-8 or invalid.
    """
    from trustfleet.monitoring.scenario import resolve_scenario

    looks_like_path = "/" in name_or_file or name_or_file.endswith(".toml")
    if not looks_like_path and not Path(name_or_file).exists():
        return resolve_scenario(name_or_file, read_file=None)  # unknown name: lists the built-ins
    text = _read_text(Path(name_or_file), what="scenario", option="--scenario")
    return resolve_scenario(text, read_file=name_or_file)


def _detector(learning_hours: float) -> Detector:
    """The detection pipeline, learning for ``learning_hours`` of simulated time."""
    from trustfleet.monitoring.pipeline import DetectorConfig, FleetDetector

    return FleetDetector(DetectorConfig(learning_s=learning_hours * 3600))


@app.command("evaluate", help=_EVALUATE_HELP)
def evaluate_command(
    scenario: Annotated[
        str, typer.Option("--scenario", help="A scenario file (TOML) or a built-in name.")
    ],
    devices: Annotated[
        int | None,
        typer.Option("--devices", min=1, max=100_000, help="Fleet size (default: the scenario's)."),
    ] = None,
    hours: Annotated[
        float | None,
        typer.Option(
            "--hours", min=0.1, max=24 * 366, help="Simulated hours (default: the scenario's)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the run.")] = 1,
    learning_hours: Annotated[
        float | None,
        typer.Option(
            "--learning-hours",
            min=0,
            max=24 * 366,
            help="Learning period before alerts count (default: the scenario's).",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    chosen = scenario_option(scenario)
    learn = chosen.learning_hours if learning_hours is None else learning_hours
    result = _evaluate_with_progress(
        chosen, devices=devices or chosen.devices, hours=hours or chosen.hours, seed=seed,
        learning_hours=learn, quiet=json_out,
    )  # fmt: skip
    if json_out:
        emit_json(result.to_json())
    else:
        _print_evaluation(result)
    if not result.targets_met:
        raise typer.Exit(TARGETS_MISSED_EXIT_CODE)


def _evaluate_with_progress(
    scenario: Scenario, *, devices: int, hours: float, seed: int, learning_hours: float,
    quiet: bool,
) -> Evaluation:  # fmt: skip
    from trustfleet.monitoring.evaluate import evaluate

    detector = _detector(learning_hours)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, disable=quiet, transient=True,
    ) as bar:  # fmt: skip
        task = bar.add_task(f"scoring {scenario.name}", total=None)

        def step(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        with interruptible(lambda: "the evaluation was stopped; nothing was written"):
            return evaluate(
                scenario, detector=detector, devices=devices, hours=hours, seed=seed,
                learning_hours=learning_hours, progress=step,
            )  # fmt: skip


def _mark(ok: bool) -> str:
    return "[green]✓[/]" if ok else "[red]✗[/]"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} s"


def _print_evaluation(result: Evaluation) -> None:
    from trustfleet.monitoring.evaluate import FALSE_ALARM_TARGET, RECALL_TARGET

    table = Table(title=f"{result.scenario}: {result.devices} devices, {result.hours:g} h")
    table.add_column("class", no_wrap=True)
    for column in ("recall", "TTD p50", "TTD p95", "FA/1000 dh", "met"):
        table.add_column(column, no_wrap=True)
    for c in result.classes:
        recall = "-" if c.recall is None else f"{c.recall:.2f} ({c.detected}/{c.attacked})"
        table.add_row(
            c.attack_class, recall, _seconds(c.ttd_median_s), _seconds(c.ttd_p95_s), "",
            _mark(c.met),
        )  # fmt: skip
    table.add_row(
        f"normal ({result.normal_device_hours:,.0f} dh)", "", "", "",
        f"{result.false_alarms_per_1000h:.2f} ({result.false_alarms})",
        _mark(result.false_alarms_met),
    )  # fmt: skip
    console.print(table)
    console.print(
        f"targets: recall >= {RECALL_TARGET} on each class, <= {FALSE_ALARM_TARGET:g} false "
        "alarm per 1,000 device-hours of normal time after learning"
    )
    if result.false_alarm_kinds:
        kinds = ", ".join(f"{k} {n}" for k, n in result.false_alarm_kinds.items())
        console.print(f"false alarms by kind: {kinds}")
    console.print(
        f"{result.records:,} records, {result.findings:,} findings, {result.alerts:,} alerts; "
        f"{result.records_per_s:,.0f} records/s"
    )


@app.command("scenarios")
def scenarios_command(json_out: JsonOpt = False) -> None:
    """List the built-in scenarios (give one by name to 'monitor evaluate --scenario')."""
    from trustfleet.monitoring.scenario import builtin_scenarios, load_scenario

    loaded = [
        (name, load_scenario(text, source=f"{name}.toml"))
        for name, text in builtin_scenarios().items()
    ]
    if json_out:
        emit_json({"scenarios": [
            {"name": name, "description": s.description, "classes": list(s.attack_classes),
             "models": [m.name for m in s.models], "devices": s.devices, "hours": s.hours,
             "learning_hours": s.learning_hours}
            for name, s in loaded
        ]})  # fmt: skip
        return
    table = Table("name", "attack classes", "models")
    for name, s in loaded:
        table.add_row(name, "\n".join(s.attack_classes) or "-", ", ".join(m.name for m in s.models))
    console.print(table)


rules_app = typer.Typer(help="Detection rules (TOML).", no_args_is_help=True)
app.add_typer(rules_app, name="rules")


@rules_app.command("check")
def rules_check(
    file: Annotated[Path, typer.Argument(help="A rules file (TOML).")],
    json_out: JsonOpt = False,
) -> None:
    """Check a rules file: it loads, or one line names the key and the problem."""
    from trustfleet.monitoring.rules import load_rules

    text = _read_text(file, what="rules", option="FILE")
    rules = load_rules(text, source=str(file))
    models = sorted(rules.models)
    if json_out:
        emit_json({"file": str(file), "ok": True, "models": models})
        return
    names = ", ".join(models) or "none"
    console.print(f"[green]✓[/] {file}: the rules load (models with their own rules: {names})")
