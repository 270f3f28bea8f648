"""``python -m trustfleet.agent.simulated``: the simulation's agent entry point (test seam).

It is ``trustfleet-agent`` (same commands, same boot loop) plus fault injection: ``--faults``
lists updater faults and the device folder's ``faults.json`` holds the simulated device's own
(a failing health check, a glitched boot); see :mod:`trustfleet.agent.platform.faults`. Its
boot children and reboots run this entry point again with the same ``--faults``. The test kits,
the simulation harness and ``trustfleet agent run --sim`` use it; a device never does.
"""

from __future__ import annotations

import sys

from trustfleet.agent.__main__ import main

__all__ = ["run"]


def run() -> None:
    """Run the simulated agent (exit code as ``trustfleet-agent``)."""
    sys.exit(main(simulated=True))


if __name__ == "__main__":
    run()
