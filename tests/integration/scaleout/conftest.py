"""Scale-out on real engines: two service hosts, one PostgreSQL store, a 3-node RabbitMQ cluster.

``scaleout`` (module scope) makes service host A with ``server init`` on a fresh PostgreSQL
database, host B as a copy of A's home (its SoftHSM2 configuration names A's token folder: one
token store shared, as a network HSM would be), starts a RabbitMQ cluster whose nodes trust A's
CAs and read their CRLs from the trust folder both hosts write, points both homes at it
(``[broker] kind = "rabbitmq"``) and starts ``server run`` on both. The TUF repository and the
published audit log live in a folder outside both homes (``[ota] repo_dir``, ``[audit]
publish_dir``), as on the shared storage of docs/deployment.md. Devices come from the
factory service, enroll over EST at host A and run the simulated agent over MQTT 3.1.1, the
first device on node 1, the second on node 2, each with the other nodes as fallbacks.
Everything is stopped by process id or group.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import pytest
from scaleoutkit import Scaleout

from support.postgres import PostgresCluster
from support.rabbitmq import RabbitCluster, RabbitUnavailable, rabbitmq_cluster
from trustfleet.sim.fleet import SimFleet
from trustfleet.sim.process import free_port
from trustfleet.sim.server import SimServer

DEVICES = 2
NODES = 3  # a quorum queue keeps its majority when one node dies
FAILOVER_S = 3.0


def _rabbit_settings(rabbit: RabbitCluster, trust: Path) -> dict[str, object]:
    return {
        "management_urls": [f"http://127.0.0.1:{n.mgmt_port}" for n in rabbit.nodes],
        "amqp_urls": [f"amqp://127.0.0.1:{n.amqp_port}" for n in rabbit.nodes],
        "username": rabbit.admin_user,
        "trust_dirs": [str(trust)],
        "device_sync_s": 1.0,
    }


def _share(a: SimServer, shared: Path) -> None:
    """Move the folders the singletons write (the TUF repository, the published audit log)
    out of A's home into ``shared``, as on the shared storage of docs/deployment.md, and point
    A's settings (copied into B's home) at them."""
    folders = {}
    for section, key, name in (
        ("ota", "repo_dir", "ota-repo"),
        ("audit", "publish_dir", "audit-log"),
    ):
        here = a.home / getattr(getattr(a.settings, section), key)
        there = shared / name
        there.parent.mkdir(parents=True, exist_ok=True)
        if here.exists():
            shutil.move(here, there)
        else:
            there.mkdir()
        folders[section] = {key: str(there)}
    a.configure(folders)


def _host_b(a: SimServer, root: Path) -> SimServer:
    """Host B: A's home copied (the token folder stays A's), its own HTTPS port."""
    home = root / "b" / "home"
    shutil.copytree(a.home, home, symlinks=True)
    shutil.rmtree(home / "run", ignore_errors=True)  # A's run state, if any, is A's
    b = SimServer(home, api_port=free_port(), log=root / "b.log")
    b.configure({"api": {"port": b.api_port}})
    return b


@pytest.fixture(scope="module")
def scaleout(
    tmp_path_factory: pytest.TempPathFactory, postgres_cluster: PostgresCluster
) -> Iterator[Scaleout]:
    root = tmp_path_factory.mktemp("scaleout")
    database = postgres_cluster.create_database()
    store_url = postgres_cluster.url.rsplit("/", 1)[0] + f"/{database}"
    fleet = SimFleet(root / "fleet", size=DEVICES)
    a = SimServer.create(
        root / "a" / "home", now=datetime.now(UTC), store_url=store_url, log=root / "a.log",
        overrides={"attestation": {"enabled": False}, "monitoring": {"enabled": False}},
    )  # fmt: skip
    fleet.server = a
    _share(a, root / "shared")
    trust = root / "rabbit-trust"
    (trust / "crl").mkdir(parents=True)
    with ExitStack() as stack:
        stack.callback(postgres_cluster.drop_database, database)
        rabbit = _cluster(stack, root, a, trust)
        a.configure({"broker": {"kind": "rabbitmq"}, "rabbitmq": _rabbit_settings(rabbit, trust)})
        password = a.home / "secrets" / "rabbitmq.password"
        password.write_text(rabbit.admin_password)
        password.chmod(0o600)
        b = _host_b(a, root)
        stack.callback(b.stop)
        stack.callback(fleet.stop)  # the agents, then host A
        a.start()
        b.start()
        for index, device_id in enumerate(fleet.provision(DEVICES)):
            node = rabbit.nodes[index % len(rabbit.nodes)]
            others = [f"localhost:{n.mqtt_tls_port}" for n in rabbit.nodes if n != node]
            agent = fleet.agent(device_id)
            agent.configure({"mqtt": {
                "host": "localhost", "port": node.mqtt_tls_port, "protocol": "3.1.1",
                "fallback": others, "failover_after_s": FAILOVER_S,
                "telemetry_interval_s": 1.0,
            }})  # fmt: skip
            enrolled = agent.enroll()
            assert enrolled.returncode == 0, enrolled.stderr
            agent.start(summary=True)
        yield Scaleout(a=a, b=b, rabbit=rabbit, fleet=fleet, store_url=store_url, trust=trust)


def _cluster(stack: ExitStack, root: Path, a: SimServer, trust: Path) -> RabbitCluster:
    """Three nodes trusting host A's CAs, reading the CRLs from ``trust`` (empty until a host
    attaches), serving host A's broker certificate."""
    try:
        return stack.enter_context(
            rabbitmq_cluster(
                root / "rabbit", nodes=NODES,
                server_cert=a.home / "tls" / "broker-chain.pem",
                server_key=a.home / "secrets" / "broker-tls.key",
                ca_bundle=a.ca_bundle, crl_dir=trust / "crl",
            )
        )  # fmt: skip
    except RabbitUnavailable as exc:
        if os.environ.get("TF_REQUIRE_RABBITMQ") == "1":
            pytest.fail(f"TF_REQUIRE_RABBITMQ=1 but {exc}")
        pytest.skip(f"RabbitMQ not available: {exc}")
