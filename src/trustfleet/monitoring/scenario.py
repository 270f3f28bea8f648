"""Scenarios: normal behaviour of device models and attacks on some devices, as data (TOML).

A scenario drives simulated devices (:class:`DeviceBehaviour`, used by the simulated agent and by
:func:`generate`) and says which devices were attacked when (:func:`ground_truth`), so the
evaluator can measure a detector against it. The file format is in docs/monitoring.md
("Scenarios and evaluation"); built-in scenarios are package data in ``scenarios/*.toml``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Final

from trustfleet.errors import InvalidInput
from trustfleet.monitoring._behaviour import DeviceBehaviour, DevicePlan, fleet_plan
from trustfleet.monitoring._scenario_spec import (
    MAX_ATTACKS,
    MAX_DEVICES,
    MAX_HOURS,
    Attack,
    Effect,
    ModelProfile,
    NumberProfile,
    Scenario,
    SetProfile,
    parse_toml,
    read_attack,
    read_models,
)
from trustfleet.monitoring._toml_table import SCENARIO_CODE, Table
from trustfleet.monitoring.records import MetricsRecord

__all__ = [
    "DEFAULT_START",
    "MAX_DEVICES",
    "MAX_HOURS",
    "Attack",
    "AttackSpan",
    "DeviceBehaviour",
    "DevicePlan",
    "Effect",
    "ModelProfile",
    "NumberProfile",
    "Scenario",
    "SetProfile",
    "builtin_scenarios",
    "device_id_for",
    "fleet_plan",
    "generate",
    "ground_truth",
    "load_scenario",
    "resolve_scenario",
]

DEFAULT_START: Final = datetime(2026, 1, 5, tzinfo=UTC)
"""A Monday, 00:00 UTC: where simulated time starts unless told otherwise."""


@dataclass(frozen=True)
class AttackSpan:
    """One attacked device's attack: its class and when (``start`` inclusive, ``end`` exclusive)."""

    device_id: str
    attack_class: str
    start: datetime
    end: datetime


def builtin_scenarios() -> dict[str, str]:
    """The built-in scenarios: name (the file's stem) → TOML text."""
    folder = resources.files("trustfleet.monitoring").joinpath("scenarios")
    return {
        entry.name.removesuffix(".toml"): entry.read_text(encoding="utf-8")
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".toml")
    }


def load_scenario(text: str, *, source: str) -> Scenario:
    """Read and check a scenario.

    Args:
        text: The TOML text.
        source: Where it came from (a path or a built-in name), for error messages.

    Returns:
        The scenario.

    Raises:
        InvalidInput: ``monitor.scenario.invalid``, naming the key and the problem.
    """
    return _load(text, source=source, depth=0)


def _load(text: str, *, source: str, depth: int) -> Scenario:
    top = Table(parse_toml(text, source=source), where="", source=source)
    head = top.table("scenario")
    base = _included(head, depth=depth)
    models = {m.name: m for m in base.models} if base else {}
    models.update(read_models(top))
    if not models:
        raise top.error("must define at least one model", "models")
    attacks = tuple(read_attack(t, models) for t in top.tables("attacks", most=MAX_ATTACKS))
    scenario = Scenario(
        name=head.get("name", str, source),
        description=head.get("description", str, ""),
        interval_s=head.integer("interval_s", base.interval_s if base else 300, low=10, high=3600),
        devices=head.integer("devices", base.devices if base else 100, low=1, high=MAX_DEVICES),
        hours=head.number("hours", base.hours if base else 72.0, low=0.1, high=MAX_HOURS),
        learning_hours=head.number(
            "learning_hours", base.learning_hours if base else 24.0, low=0.0, high=MAX_HOURS
        ),
        models=tuple(models.values()),
        attacks=attacks,
    )
    head.done()
    top.done()
    if sum(m.share for m in scenario.models) <= 0:
        raise top.error("must give at least one model a share > 0", "models")
    return scenario


def _included(head: Table, *, depth: int) -> Scenario | None:
    name = head.get("include", str, "")
    if not name:
        return None
    builtins = builtin_scenarios()
    if name not in builtins or depth > 0:
        problem = "is not a built-in scenario" if depth == 0 else "may not include again"
        raise head.error(f"{problem} ({name!r}; built-in: {', '.join(builtins)})", "include")
    return _load(builtins[name], source=f"{name}.toml", depth=depth + 1)


def resolve_scenario(text_or_name: str, *, read_file: str | None) -> Scenario:
    """A scenario from a file's text (``read_file`` is its path) or a built-in name."""
    if read_file is not None:
        return load_scenario(text_or_name, source=read_file)
    builtins = builtin_scenarios()
    if text_or_name not in builtins:
        raise InvalidInput(
            f"no scenario file or built-in scenario named {text_or_name!r}",
            hint=f"give a TOML file or a built-in scenario: {', '.join(builtins)}",
            code="monitor.scenario.unknown",
        )
    return load_scenario(builtins[text_or_name], source=f"{text_or_name}.toml")


def device_id_for(index: int, *, seed: int) -> str:
    """The simulated device id of the fleet's ``index``-th device."""
    return f"dev-s{seed % 100_000:05d}-{index:06d}"


def _check_run(devices: int, hours: float) -> None:
    if not 1 <= devices <= MAX_DEVICES:
        raise InvalidInput(
            f"devices must be 1..{MAX_DEVICES} (got {devices})", hint="use a smaller fleet",
            code=SCENARIO_CODE,
        )  # fmt: skip
    if not 0 < hours <= MAX_HOURS:
        raise InvalidInput(
            f"hours must be > 0 and <= {MAX_HOURS} (got {hours:g})", hint="use a shorter run",
            code=SCENARIO_CODE,
        )  # fmt: skip


def generate(
    scenario: Scenario, *, devices: int, hours: float, seed: int, start: datetime = DEFAULT_START
) -> Iterator[MetricsRecord]:
    """Every device's records, fleet-wide and in time order (device then service view).

    Args:
        scenario: The scenario.
        devices: Fleet size.
        hours: Simulated time to cover, from ``start``.
        seed: Makes the run reproducible (same seed, same records).
        start: Aware start of simulated time.

    Yields:
        ``MetricsRecord`` of ``source="device"`` and ``"service"`` (when the model has svc-
        profiles), for each window end ``start + k * interval_s``, k = 1, 2, …

    Raises:
        InvalidInput: sizes out of bounds.
    """
    _check_run(devices, hours)
    interval = scenario.interval_s
    plan = fleet_plan(scenario, devices=devices, seed=seed)
    fleet = [
        DeviceBehaviour(
            scenario, device_index=i, device_id=device_id_for(i, seed=seed), model=p.model,
            seed=seed, start=start, devices=devices,
        )
        for i, p in enumerate(plan)
    ]  # fmt: skip
    windows = int(hours * 3600 // interval)
    step = timedelta(seconds=interval)
    for k in range(1, windows + 1):
        end = start + k * step
        for behaviour in fleet:
            device_record, service_record = behaviour.window(k - 1, end=end)
            yield device_record
            if service_record is not None:
                yield service_record


def ground_truth(
    scenario: Scenario, *, devices: int, hours: float, seed: int, start: datetime = DEFAULT_START
) -> list[AttackSpan]:
    """The attacks of a run of :func:`generate` with the same arguments, one span per device.

    Spans are clipped to the run; attacks starting after its end are left out.
    """
    _check_run(devices, hours)
    end_of_run = start + timedelta(hours=hours)
    spans = []
    for index, plan in enumerate(fleet_plan(scenario, devices=devices, seed=seed)):
        for attack_index, onset_s, end_s in plan.attacks:
            begin = start + timedelta(seconds=onset_s)
            if begin >= end_of_run:
                continue
            spans.append(
                AttackSpan(
                    device_id=device_id_for(index, seed=seed),
                    attack_class=scenario.attacks[attack_index].attack_class,
                    start=begin,
                    end=min(start + timedelta(seconds=end_s), end_of_run),
                )
            )
    return spans
