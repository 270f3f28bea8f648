"""The device agent: identity (EST enrollment), the MQTT link, the updater and the attester.

Entry point: :func:`trustfleet.agent.runner.run_agent` (``trustfleet agent run``). What other
packages use from the private modules is exported here, loaded on first use: the agent's steady
state never imports the boot loop or the TPM hooks (they bring the keystore and PKCS#11).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trustfleet.agent._bootloop import (
        DEVICE_ENTRY,
        SIMULATED_MODULE,
        AgentEntry,
        boot_in_child,
        reexec,
        run_boot_loop,
        stop_on_signals,
        update_once,
    )
    from trustfleet.agent._tpmhooks import power_off, power_on

__all__ = [
    "DEVICE_ENTRY",
    "SIMULATED_MODULE",
    "AgentEntry",
    "boot_in_child",
    "power_off",
    "power_on",
    "reexec",
    "run_boot_loop",
    "stop_on_signals",
    "update_once",
]

_EXPORTED_FROM = {
    "DEVICE_ENTRY": "_bootloop",
    "SIMULATED_MODULE": "_bootloop",
    "AgentEntry": "_bootloop",
    "run_boot_loop": "_bootloop",
    "stop_on_signals": "_bootloop",
    "boot_in_child": "_bootloop",
    "reexec": "_bootloop",
    "update_once": "_bootloop",
    "power_off": "_tpmhooks",
    "power_on": "_tpmhooks",
}


def __getattr__(name: str) -> Any:
    """Load an exported name from its private module on first use (PEP 562)."""
    module = _EXPORTED_FROM.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
