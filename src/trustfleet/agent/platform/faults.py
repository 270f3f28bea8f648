"""Fault injection for tests and the simulation (never set on a real device).

``TF_OTA_FAULTS`` lists faults separated by commas, each ``<point>:<action>[@<offset>]``:

* ``<point>`` is an updater state (``checking``, ``downloading``, ``installing``,
  ``installed``, ``rebooting``, ``trial``, ``committed``) or ``write`` (the slot write);
* ``<action>`` is ``error`` (the step fails with ``ota.fault.injected``) or ``kill`` (the
  process kills itself with SIGKILL, as a power cut would stop it);
* ``@<offset>`` (``write`` only) is the byte offset of the slot image at which to act.

Examples: ``installing:error``, ``downloading:kill``, ``write:kill@123456``.

The simulated health check also reads ``DEVDIR/<id>/faults.json``: ``{"health_check": "fail"}``
makes every health check of a new slot fail (the demo's rollback device).
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from trustfleet.agent.platform._files import read_json
from trustfleet.errors import Config, Unavailable

__all__ = ["ENV_VAR", "FAULT_FILE", "POINTS", "Fault", "FaultPlan", "health_fault"]

ENV_VAR = "TF_OTA_FAULTS"
FAULT_FILE = "faults.json"
POINTS = frozenset(
    {
        "checking",
        "downloading",
        "installing",
        "installed",
        "rebooting",
        "trial",
        "committed",
        "write",
    }
)
_ITEM = re.compile(r"([a-z_]+):(error|kill)(?:@([0-9]{1,12}))?")
_MAX_SPEC_CHARS = 1024

Action = Literal["error", "kill"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """One injected fault."""

    point: str
    action: Action
    offset: int | None = None


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """The faults to inject in this process (empty: none)."""

    faults: tuple[Fault, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> FaultPlan:
        """The plan in ``TF_OTA_FAULTS`` (empty when unset).

        Raises:
            Config: The variable is malformed (code ``ota.fault.spec``).
        """
        spec = (os.environ if environ is None else environ).get(ENV_VAR, "").strip()
        return cls.parse(spec) if spec else cls()

    @classmethod
    def parse(cls, spec: str) -> FaultPlan:
        """Parse a fault list (see the module docstring).

        Raises:
            Config: The list is malformed (code ``ota.fault.spec``).
        """
        faults = []
        for item in spec[: _MAX_SPEC_CHARS + 1].split(","):
            match = _ITEM.fullmatch(item.strip())
            if len(spec) > _MAX_SPEC_CHARS or match is None or match[1] not in POINTS:
                raise Config(
                    f"{ENV_VAR}: '{item.strip()[:40]}' is not a fault",
                    hint="use <state|write>:<error|kill>[@offset], e.g. write:kill@4096",
                    code="ota.fault.spec",
                )
            offset = int(match[3]) if match[3] else None
            action: Action = "kill" if match[2] == "kill" else "error"
            faults.append(Fault(point=match[1], action=action, offset=offset))
        return cls(tuple(faults))

    def hit(self, point: str) -> None:
        """Act on the faults planned at ``point`` (no offset): raise or kill.

        Raises:
            Unavailable: An ``error`` fault (code ``ota.fault.injected``).
        """
        for fault in self.faults:
            if fault.point == point and fault.offset is None:
                _act(fault)

    def write_fault(self) -> Fault | None:
        """The fault planned at an offset of the slot write, if any."""
        for fault in self.faults:
            if fault.point == "write":
                return fault
        return None

    def act(self, fault: Fault) -> None:
        """Act on ``fault`` now (the slot writer calls it at the planned offset)."""
        _act(fault)


def _act(fault: Fault) -> None:
    if fault.action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    where = fault.point if fault.offset is None else f"{fault.point}@{fault.offset}"
    raise Unavailable(
        f"injected fault at {where}", hint=f"unset {ENV_VAR}", code="ota.fault.injected"
    )


def health_fault(directory: Path) -> str | None:
    """Why the simulated health check must fail (``faults.json``), or None."""
    doc = read_json(directory / FAULT_FILE, max_bytes=4096)
    if doc is not None and doc.get("health_check") == "fail":
        return f"simulated health-check failure ({FAULT_FILE})"
    return None
