"""Typed settings overrides: ``{"section": {"key": value}}`` checked against the models.

The harness changes a server's ``trustfleet.toml`` or a device's ``device.toml`` through the
pydantic models, never by editing config text: an unknown section or key is refused, a value
the model rejects is refused, and the file is written whole from the validated model.
"""

from __future__ import annotations

import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import BaseModel, ValidationError

from trustfleet.agent.settings import DEVICE_FILE, DeviceSettings
from trustfleet.errors import InvalidInput
from trustfleet.fileio import write_atomic
from trustfleet.settings import ServerSettings, load_server_settings, render_server_toml

__all__ = [
    "Changes",
    "merge_changes",
    "parse_dotted",
    "update_device_settings",
    "update_server_settings",
]

Changes = Mapping[str, Mapping[str, Any]]
"""``{"attestation": {"enabled": False}}``: new values by section, then key."""


def _section_model(model: type[BaseModel], section: str) -> type[BaseModel]:
    field = model.model_fields.get(section)
    candidates = typing.get_args(field.annotation) if field is not None else ()
    if field is not None and not candidates:
        candidates = (field.annotation,)
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    raise InvalidInput(
        f"no settings section [{section}] in {model.__name__}",
        hint=f"sections: {', '.join(_sections(model))}",
        code="sim.settings.unknown",
    )


def _sections(model: type[BaseModel]) -> list[str]:
    return [
        name
        for name, field in model.model_fields.items()
        if any(
            isinstance(a, type) and issubclass(a, BaseModel)
            for a in (typing.get_args(field.annotation) or (field.annotation,))
        )
    ]


def merge_changes(
    model: type[BaseModel], current: Mapping[str, Any], changes: Changes
) -> dict[str, Any]:
    """``current`` (a model's data) with ``changes`` applied, every name checked first.

    Raises:
        InvalidInput: A section or key that ``model`` does not have (code
            ``sim.settings.unknown``).
    """
    merged: dict[str, Any] = dict(current)
    for section, values in changes.items():
        sub = _section_model(model, section)
        unknown = sorted(set(values) - set(sub.model_fields))
        if unknown:
            raise InvalidInput(
                f"no setting '{unknown[0]}' in [{section}]",
                hint=f"keys: {', '.join(sub.model_fields)}",
                code="sim.settings.unknown",
            )
        base = merged.get(section) or {}
        merged[section] = {**dict(base), **dict(values)}
    return merged


def parse_dotted(settings: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """``{"section.key": "toml value"}`` as :data:`Changes` (each value parsed as TOML).

    Raises:
        InvalidInput: A name without a section, or a value that is not a TOML value.
    """
    changes: dict[str, dict[str, Any]] = {}
    for name, text in settings.items():
        section, dot, key = name.partition(".")
        if not dot or not section or not key:
            raise InvalidInput(f"'{name}' is not section.key", code="sim.settings.name")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError as exc:
            raise InvalidInput(f"{name}: {text!r} is not a TOML value: {exc}") from exc
        changes.setdefault(section, {})[key] = value
    return changes


def _validate(model: type[BaseModel], data: Mapping[str, Any], *, what: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(f"{what}: {where}: {first['msg']}", code="sim.settings.invalid") from exc


def update_server_settings(home: Path, changes: Changes) -> ServerSettings:
    """Apply ``changes`` to ``home/trustfleet.toml``, validated, and write the file whole.

    (The shape of ``trustfleet.settings.update_server_settings``; the harness's own until that
    lands.)

    Raises:
        InvalidInput: An unknown section or key, or a value the settings refuse.
        Config: The home's settings cannot be read.
    """
    current = load_server_settings(home)
    data = merge_changes(ServerSettings, current.model_dump(exclude={"home"}), changes)
    updated: ServerSettings = _validate(
        ServerSettings, {**data, "home": current.home}, what=str(home / "trustfleet.toml")
    )
    write_atomic(home / "trustfleet.toml", render_server_toml(updated).encode("utf-8"))
    _check_written(load_server_settings(home), updated, changes)
    return updated


def _check_written(read: ServerSettings, meant: ServerSettings, changes: Changes) -> None:
    """Every change reads back from the written file (the renderer left none out)."""
    for section, values in changes.items():
        for key in values:
            value = getattr(getattr(meant, section), key)
            if getattr(getattr(read, section), key) != value:
                raise InvalidInput(
                    f"[{section}] {key} did not read back as {value!r} from trustfleet.toml",
                    code="sim.settings.unwritten",
                )


def update_device_settings(directory: Path, changes: Changes) -> DeviceSettings:
    """Apply ``changes`` to ``directory/device.toml``, validated, and write it from the data.

    Raises:
        InvalidInput: An unknown section or key, or a value the device settings refuse.
    """
    path = directory / DEVICE_FILE
    current = tomllib.loads(path.read_text(encoding="utf-8"))
    data = merge_changes(DeviceSettings, current, changes)
    settings: DeviceSettings = _validate(
        DeviceSettings, {**data, "directory": directory.resolve()}, what=str(path)
    )
    write_atomic(path, tomli_w.dumps(data).encode("utf-8"), mode=path.stat().st_mode & 0o777)
    return settings
