"""Two service hosts on one PostgreSQL store with a three-node RabbitMQ cluster (issue 16).

Devices on both nodes are stored once by the ingest workers of both hosts (competing consumers
of one quorum queue); a revocation made through host A cuts the device off on node 2; a
quarantine is one rule for the whole cluster; both hosts serve the one audit log that the
leader publishes into the shared folder; when host A dies, host B leads every singleton;
when a node dies, its device fails over to another node and no QoS 1 telemetry is lost.
Independent checks: ``rabbitmqctl``, the management API's own view, TLS handshakes from Python.
"""

from __future__ import annotations

import contextlib
import os
import signal
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from scaleoutkit import Scaleout

from support.postgres import PostgresCluster, restart
from support.rabbitmq import RabbitNode
from trustfleet.audit.checkpoint import parse_checkpoint
from trustfleet.audit.note import MAX_NOTE_BYTES, parse_note
from trustfleet.broker.rabbitmq import device_permissions
from trustfleet.sim.process import wait_until
from trustfleet.sim.server import SimServer
from trustfleet.store import create_engine, role_holders

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres, pytest.mark.integration]

WAIT_S = 60.0
RETRY_S = 1.0  # the agents' backoff_initial_s
ROLES = {"campaigns", "audit", "tuf-timestamp", "decommissions", "expiry-watch", "crl-refresh"}


def _consumers(scaleout: Scaleout, queue: str) -> list[dict[str, Any]]:
    rows = scaleout.rabbit.ctl_json(scaleout.rabbit.nodes[0], "list_consumers", "queue_name",
                                    "channel_pid")  # fmt: skip
    return [r for r in rows or [] if r.get("queue_name") == queue]


def _connected(scaleout: Scaleout, device_id: str, node: RabbitNode) -> bool:
    return any(c.user == device_id for c in scaleout.rabbit.mqtt_connections(node))


def test_devices_on_both_nodes_are_stored_by_both_hosts(scaleout: Scaleout) -> None:
    fleet = scaleout.fleet
    devices = fleet.device_ids
    for device_id in devices:
        node = scaleout.node_of(device_id)
        wait_until(lambda d=device_id, n=node: _connected(scaleout, d, n), timeout_s=WAIT_S,
                   what=f"{device_id} on {node.name}", poll_s=0.5)  # fmt: skip
    assert len({scaleout.node_of(d).name for d in devices}) == len(devices)  # different nodes
    since = fleet.telemetry_counts()
    fleet.wait_telemetry(devices, rows=3, since=since, timeout_s=WAIT_S)
    # Both hosts consume the one ingest queue (one consumer per ingest worker of each host).
    assert len(_consumers(scaleout, "tf.ingest")) == 2


def test_a_revocation_through_host_a_cuts_the_device_off_on_node_2(scaleout: Scaleout) -> None:
    device_id = scaleout.fleet.device_ids[1]
    rabbit, node2 = scaleout.rabbit, scaleout.rabbit.nodes[1]
    assert scaleout.node_of(device_id) == node2
    wait_until(lambda: _connected(scaleout, device_id, node2), timeout_s=WAIT_S,
               what="the device on node 2", poll_s=0.5)  # fmt: skip
    serial = scaleout.fleet.agent(device_id).ldevid().serial_number
    revoked = scaleout.a.cli("device", "revoke", device_id, "--reason", "keyCompromise", "--json")
    assert revoked.returncode == 0, revoked.stderr
    started = time.monotonic()
    wait_until(lambda: not _connected(scaleout, device_id, node2), timeout_s=WAIT_S,
               what="node 2 to drop the revoked device", poll_s=0.1)  # fmt: skip
    print(f"\nrevoked through host A, cut off on node 2 after {time.monotonic() - started:.1f} s")
    # Every node reads the CRL the hosts wrote, which lists the LDevID: no new handshake.
    (crl_file,) = (scaleout.trust / "crl").iterdir()
    crl = x509.load_pem_x509_crl(crl_file.read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(serial) is not None
    wait_until(lambda: device_id not in rabbit.ctl(node2, "list_users"), timeout_s=WAIT_S,
               what="its broker user removed", poll_s=0.5)  # fmt: skip
    time.sleep(3 * RETRY_S)  # the agent keeps trying; it gets nowhere on either node
    assert not any(_connected(scaleout, device_id, node) for node in rabbit.nodes)


def test_a_quarantine_is_one_rule_on_every_node(scaleout: Scaleout) -> None:
    device_id = scaleout.fleet.device_ids[0]
    done = scaleout.b.cli("attest", "quarantine", device_id, "--reason", "test", "--json")
    assert done.returncode == 0, done.stderr
    narrowed = device_permissions(device_id, quarantined=True)
    for node in scaleout.rabbit.nodes:

        def rule(n: RabbitNode = node) -> str | None:
            rows = scaleout.rabbit.ctl_json(n, "list_user_topic_permissions", device_id)
            return next((r["write"] for r in rows or [] if r["exchange"] == "amq.topic"), None)

        wait_until(lambda r=rule: r() == narrowed.topic_write, timeout_s=WAIT_S,
                   what=f"the quarantine rule on {node.name}", poll_s=0.5)  # fmt: skip
    lifted = scaleout.a.cli("attest", "lift", device_id, "--json")
    assert lifted.returncode == 0, lifted.stderr
    whole = device_permissions(device_id).topic_write
    wait_until(
        lambda: any(r["write"] == whole for r in scaleout.rabbit.ctl_json(
            scaleout.rabbit.nodes[1], "list_user_topic_permissions", device_id) or []),
        timeout_s=WAIT_S, what="the whole rule back", poll_s=0.5,
    )  # fmt: skip


def _checkpoint_size(host: SimServer) -> int | None:
    """The size in the audit log checkpoint ``host`` serves (None: none published yet)."""
    context = ssl.create_default_context(cafile=str(host.ca_bundle))
    url = f"{host.base_url}/audit/log/checkpoint"
    try:
        with urllib.request.urlopen(url, context=context, timeout=10) as resp:  # noqa: S310 - https to our server
            note: bytes = resp.read(MAX_NOTE_BYTES)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise
    return parse_checkpoint(parse_note(note).text).size


def test_both_hosts_serve_the_one_audit_log_the_leader_publishes(scaleout: Scaleout) -> None:
    a, b = scaleout.a, scaleout.b
    wait_until(lambda: _checkpoint_size(a) is not None, timeout_s=WAIT_S,
               what="a published audit checkpoint", poll_s=0.5)  # fmt: skip
    before = _checkpoint_size(a) or 0
    device_id = scaleout.fleet.device_ids[0]
    for host, action in (
        (b, ["quarantine", device_id, "--reason", "audit"]),
        (a, ["lift", device_id]),
    ):
        done = host.cli("attest", *action, "--json")
        assert done.returncode == 0, done.stderr

    # Whichever host leads `audit` publishes into the shared folder; both serve the same log.
    def grown_on_both() -> bool:
        size = _checkpoint_size(a)
        return size is not None and size >= before + 2 and _checkpoint_size(b) == size

    wait_until(grown_on_both, timeout_s=WAIT_S, what="both hosts serving the grown audit log",
               poll_s=0.5)  # fmt: skip


def test_both_hosts_recover_from_a_postgresql_restart(
    scaleout: Scaleout, postgres_cluster: PostgresCluster
) -> None:
    fleet = scaleout.fleet
    alive = [d for d in fleet.device_ids if d != fleet.device_ids[1]]  # [1] was revoked
    restart(postgres_cluster)  # every session ends: the stores' connections, every role's lock
    fleet.wait_telemetry(alive, rows=3, since=fleet.telemetry_counts(), timeout_s=WAIT_S)
    engine = create_engine(scaleout.store_url)
    try:
        wait_until(lambda: set(role_holders(engine)) >= ROLES, timeout_s=WAIT_S,
                   what="every role led again", poll_s=0.5)  # fmt: skip
    finally:
        engine.dispose()
    for host in (scaleout.a, scaleout.b):
        assert host.ready(), f"{host.home} not ready after the restart"


def _parents() -> dict[int, int]:
    """Every process's parent, from /proc."""
    found: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[int(stat.parent.name)] = int(fields[1])
    return found


def _host_of(holder: str, hosts: dict[int, str]) -> str | None:
    """Which host's process tree a role's holder (``host:pid``) is in (None: no live one)."""
    pid, parents = int(holder.rsplit(":", 1)[1]), _parents()
    while pid in parents:
        if pid in hosts:
            return hosts[pid]
        pid = parents[pid]
    return None


def _tree(root: int) -> list[int]:
    parents = _parents()
    tree, frontier = [root], [root]
    while frontier:
        frontier = [p for p, parent in parents.items() if parent in frontier]
        tree += frontier
    return tree


def test_host_b_takes_over_every_singleton_when_host_a_dies(scaleout: Scaleout) -> None:
    a, b = scaleout.a, scaleout.b
    engine = create_engine(scaleout.store_url)
    try:
        wait_until(lambda: set(role_holders(engine)) >= ROLES, timeout_s=WAIT_S,
                   what="every role led", poll_s=0.5)  # fmt: skip
        hosts = {a.pid: "a", b.pid: "b"}
        leaders = {role: _host_of(h, hosts) for role, h in role_holders(engine).items()}
        assert "a" in leaders.values()  # A started first: it leads roles
        assert set(leaders.values()) <= {"a", "b"}
        for pid in _tree(a.pid):  # host A is gone, every process of it at once
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert a.process is not None and a.process.proc is not None
        a.process.proc.wait(timeout=30)
        started = time.monotonic()

        def all_on_b() -> bool:
            holders = role_holders(engine)
            return set(holders) >= ROLES and {_host_of(h, hosts) for h in holders.values()} == {"b"}

        wait_until(all_on_b, timeout_s=WAIT_S, what="host B to lead every role", poll_s=0.2)
        print(f"\nhost B leads every role {time.monotonic() - started:.1f} s after A died")
    finally:
        engine.dispose()
    fleet = scaleout.fleet  # devices keep being stored, through host B alone
    alive = [d for d in fleet.device_ids if fleet.agent(d).running and d != fleet.device_ids[1]]
    fleet.wait_telemetry(alive, rows=2, since=fleet.telemetry_counts(), timeout_s=WAIT_S)
    # B's audit sequencer goes on publishing the one log in the shared folder.
    before = _checkpoint_size(b) or 0
    for action in (["quarantine", alive[0], "--reason", "audit"], ["lift", alive[0]]):
        done = b.cli("attest", *action, "--json")
        assert done.returncode == 0, done.stderr
    wait_until(lambda: (_checkpoint_size(b) or 0) >= before + 2, timeout_s=WAIT_S,
               what="host B publishing the audit log", poll_s=0.5)  # fmt: skip


def test_a_node_dies_its_device_fails_over_and_no_telemetry_is_lost(scaleout: Scaleout) -> None:
    rabbit, fleet = scaleout.rabbit, scaleout.fleet
    device_id = fleet.device_ids[0]  # (the quarantine earlier may have moved it to another node)

    def where() -> RabbitNode | None:
        return next((n for n in rabbit.nodes if _connected(scaleout, device_id, n)), None)

    node = wait_until(where, timeout_s=WAIT_S, what="the device on a node", poll_s=0.5)
    vm = int(rabbit.eval(node, "os:getpid().").strip('"'))
    os.kill(vm, signal.SIGKILL)  # its node crashes: the Erlang VM, at once
    others = [n for n in rabbit.nodes if n != node]
    wait_until(lambda: any(_connected(scaleout, device_id, n) for n in others), timeout_s=WAIT_S,
               what="the device on another node", poll_s=0.5)  # fmt: skip
    fleet.wait_telemetry([device_id], rows=3, since=fleet.telemetry_counts(), timeout_s=WAIT_S)
    agent = fleet.agent(device_id)
    agent.stop()  # SIGTERM: it delivers what is queued, then prints its run summary
    summary = agent.last_summary()
    assert summary is not None, agent.log.read_text()[-2000:]
    assert summary["queue_depth"] == 0 and summary["queue_dropped"] == 0
    published = summary["published"]["telemetry"]

    def stored() -> bool:
        return fleet.telemetry_counts()[device_id] == published

    wait_until(stored, timeout_s=WAIT_S, what=f"all {published} telemetry messages stored",
               poll_s=0.5)  # fmt: skip
