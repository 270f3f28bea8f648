"""Fault injection for tests and the simulation: the explicit test seam.

Nothing here reads the environment. A :class:`Faults` object is passed into the updater and
the bootloader (default :data:`NO_FAULTS`); only the simulation's entry point
(``python -m trustfleet.agent.simulated``, ``trustfleet agent run --sim``) builds one, from
its ``--faults`` option and the device folder's ``faults.json``. The device's own entry point
(``trustfleet-agent``) never does.

``--faults`` lists updater faults separated by commas, each ``<point>:<action>[@<offset>]``:

* ``<point>`` is an updater state (``checking``, ``downloading``, ``installing``,
  ``installed``, ``rebooting``, ``trial``, ``committed``) or ``write`` (the slot write);
* ``<action>`` is ``error`` (the step fails with ``ota.fault.injected``) or ``kill`` (the
  process kills itself with SIGKILL, as a power cut would stop it);
* ``@<offset>`` (``write`` only) is the byte offset of the slot image at which to act.

Examples: ``installing:error``, ``downloading:kill``, ``write:kill@123456``.

``DEVDIR/<id>/faults.json`` holds the simulated device's own faults: ``{"health_check":
"fail"}`` makes every health check of a new slot fail (the demo's rollback device);
``{"boot": "skip_verify"}`` glitches the measured boot's verification away (tamper tests);
``{"metrics_scenario": {"source": "normal", "device_index": 3, "devices": 10, "seed": 1,
"profile": "gw-x1"}}`` makes the device's metrics reports follow a scenario (a built-in name or
a TOML file) as the fleet's ``device_index``-th device, instead of reading ``/proc``.
"""

from __future__ import annotations

import os
import re
import signal
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Final, Literal

from trustfleet.agent.platform._files import read_json
from trustfleet.errors import Config, Unavailable

__all__ = [
    "FAULT_FILE",
    "NO_FAULTS",
    "OPTION",
    "POINTS",
    "Fault",
    "FaultPlan",
    "Faults",
    "MetricsScenario",
]

OPTION = "--faults"
"""The simulation entry point's option that lists updater faults."""
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
_MAX_FILE_BYTES = 4096

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
                    f"{OPTION}: '{item.strip()[:40]}' is not a fault",
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
        f"injected fault at {where}", hint=f"run without {OPTION}", code="ota.fault.injected"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsScenario:
    """The scenario a simulated device's metrics follow (``faults.json`` ``metrics_scenario``).

    Attributes:
        source: A scenario file (relative to the device folder) or a built-in scenario's name.
        device_index: The device's place in the scenario's fleet (decides its attacks).
        devices: The fleet size the attacks are planned for.
        seed: Makes the behaviour reproducible.
        profile: The scenario's model the device behaves as ("": chosen by the scenario).
    """

    source: str
    device_index: int = 0
    devices: int = 1
    seed: int = 0
    profile: str = ""

    @classmethod
    def from_json(cls, doc: object, *, directory: Path) -> MetricsScenario | None:
        """Read ``metrics_scenario``; None when absent.

        Raises:
            Config: It is malformed (code ``agent.scenario``).
        """
        if doc is None:
            return None
        types = {"source": str, "device_index": int, "devices": int, "seed": int, "profile": str}
        if (
            not isinstance(doc, dict)
            or not isinstance(doc.get("source"), str)
            or any(k not in types or type(v) is not types[k] for k, v in doc.items())
        ):
            raise Config(
                f"{FAULT_FILE}: metrics_scenario is malformed",
                hint='use {"source": "<file or name>", "device_index": n, "devices": n, '
                '"seed": n, "profile": "<model>"}',
                code="agent.scenario",
            )
        source = doc["source"]
        if "/" in source or source.endswith(".toml"):
            source = str(directory / source)
        return cls(**{**doc, "source": source})

    def to_json(self) -> dict[str, object]:
        """The ``metrics_scenario`` value that :meth:`from_json` reads back."""
        return asdict(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class Faults:
    """The faults a simulated device injects (the default, :data:`NO_FAULTS`: none).

    Attributes:
        plan: Updater faults (states and the slot write).
        health_check: Why every health check of a new slot fails, or None.
        boot_skip_verify: The measured boot skips verifying the slot (a glitch).
        spec: The ``--faults`` text the plan came from, passed on to the boot child and
            across reboots ("" for none).
        metrics_scenario: The scenario the device's metrics follow (None: ``/proc``).
    """

    plan: FaultPlan = field(default_factory=FaultPlan)
    health_check: str | None = None
    boot_skip_verify: bool = False
    spec: str = ""
    metrics_scenario: MetricsScenario | None = None

    @classmethod
    def for_simulation(cls, directory: Path, *, spec: str | None = None) -> Faults:
        """The faults of a simulated device: ``spec`` and ``directory``'s ``faults.json``.

        Raises:
            Config: ``spec`` is malformed (code ``ota.fault.spec``).
        """
        text = (spec or "").strip()
        doc = read_json(directory / FAULT_FILE, max_bytes=_MAX_FILE_BYTES) or {}
        failing = doc.get("health_check") == "fail"
        return cls(
            plan=FaultPlan.parse(text) if text else FaultPlan(),
            health_check=f"simulated health-check failure ({FAULT_FILE})" if failing else None,
            boot_skip_verify=doc.get("boot") == "skip_verify",
            spec=text,
            metrics_scenario=MetricsScenario.from_json(
                doc.get("metrics_scenario"), directory=directory
            ),
        )


NO_FAULTS: Final = Faults()
"""No fault at all: what the device's own entry point always uses."""
