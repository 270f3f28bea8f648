"""Typed settings overrides for the harness: ``{"section": {"key": value}}``.

The harness changes a server's ``trustfleet.toml`` and a device's ``device.toml`` only through
the models (:func:`trustfleet.settings.update_server_settings`,
:func:`trustfleet.configfile.device.update_device_settings`): an unknown section or key, or a
value the model refuses, fails, and the file is written whole from the validated model. Never
by editing config text. :func:`parse_dotted` reads the tests' older ``{"section.key": "toml
value"}`` form.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from typing import Any

from trustfleet.errors import InvalidInput

__all__ = ["Changes", "parse_dotted"]

Changes = Mapping[str, Mapping[str, Any]]
"""``{"attestation": {"enabled": False}}``: new values by section, then key."""


def parse_dotted(settings: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """``{"section.key": "toml value"}`` as :data:`Changes` (each value parsed as TOML).

    Raises:
        InvalidInput: A name without a section, or a value that is not a TOML value (code
            ``sim.settings.name`` or ``sim.settings.value``).
    """
    changes: dict[str, dict[str, Any]] = {}
    for name, text in settings.items():
        section, dot, key = name.partition(".")
        if not dot or not section or not key:
            raise InvalidInput(f"'{name}' is not section.key", code="sim.settings.name")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError as exc:
            raise InvalidInput(
                f"{name}: {text!r} is not a TOML value", code="sim.settings.value"
            ) from exc
        changes.setdefault(section, {})[key] = value
    return changes
