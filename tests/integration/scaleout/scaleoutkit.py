"""What the scale-out tests share: the two hosts, the cluster, the fleet (conftest.py makes it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from support.rabbitmq import RabbitCluster, RabbitNode
from trustfleet.sim.fleet import SimFleet
from trustfleet.sim.server import SimServer

__all__ = ["Scaleout"]


@dataclass
class Scaleout:
    """The two hosts, the cluster, the fleet, and the trust folder the nodes read."""

    a: SimServer
    b: SimServer
    rabbit: RabbitCluster
    fleet: SimFleet
    store_url: str
    trust: Path

    def node_of(self, device_id: str) -> RabbitNode:
        """The node a device connects to (devices alternate between the nodes)."""
        return self.rabbit.nodes[self.fleet.device_ids.index(device_id) % len(self.rabbit.nodes)]
