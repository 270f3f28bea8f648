"""The device agent: identity (EST enrollment), the MQTT link, the updater and the attester.

Entry point: :func:`trustfleet.agent.runner.run_agent` (``trustfleet agent run``). What other
packages use from the private modules is exported here.
"""

from trustfleet.agent._bootloop import boot_in_child, reexec, update_once
from trustfleet.agent._tpmhooks import power_off, power_on

__all__ = ["boot_in_child", "power_off", "power_on", "reexec", "update_once"]
