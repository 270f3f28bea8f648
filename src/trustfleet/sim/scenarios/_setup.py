"""The demo's first stages: a home, a release, devices, the service, enrollment, telemetry."""

from __future__ import annotations

from trustfleet.sim.fleet import SimFleet
from trustfleet.sim.process import wait_until
from trustfleet.sim.scenarios._common import AGENT_TIMEOUT_S, DEMO_ROLES, V1, publish, within
from trustfleet.sim.scenarios._detect import monitoring_files
from trustfleet.sim.scenarios._lwm2m import demo_lwm2m_settings
from trustfleet.sim.scenarios._result import Observed, stage

__all__ = ["enroll", "init", "provision", "reenroll", "release", "serve", "telemetry"]

_LIVELY_MQTT = {"telemetry_interval_s": 1.0, "heartbeat_interval_s": 5.0, "connect_timeout_s": 3.0}
"""A lively demo: telemetry every second, a short connect timeout on loopback."""
_TELEMETRY_ROWS = 3


@stage("init")
def init(fleet: SimFleet) -> Observed:
    """A new server home (CAs in SoftHSM2 tokens) on free loopback ports, and a witness of
    its audit log (another party's home, token and key) that ``server run`` will ask."""
    server = fleet.create_server()
    server.configure(demo_lwm2m_settings())  # the lwm2m stage's constrained device
    witness = fleet.add_witness()
    monitoring_files(fleet)  # the rules and playbook the detect stage rewrites
    return Observed(
        {
            "the CA bundle exists": server.ca_bundle.is_file(),
            "the witness serves": witness.process is not None and witness.process.running,
        },
        {
            "home": str(server.home),
            "api_port": server.api_port,
            "mqtt_port": server.mqtt_port,
            "witness": witness.url,
        },
    )


@stage("release")
def release(fleet: SimFleet) -> Observed:
    """The first firmware release, signed and published in the TUF repository with its SBOM
    and signed provenance, which verify offline from the published repository."""
    published = publish(fleet, V1)
    components = published["sbom_components"]
    return Observed(
        {
            f"release {V1} is published": published["version"] == V1,
            f"its SBOM lists {components} components": bool(components),
            "its provenance verified": published["provenance_verified"],
        },
        published,
    )


@stage("provision")
def provision(fleet: SimFleet) -> Observed:
    """``fleet.size`` devices made by the factory service, with the demo's roles."""
    ids = fleet.provision(fleet.size, roles=DEMO_ROLES)
    for device_id in ids:
        fleet.agent(device_id).configure({"mqtt": _LIVELY_MQTT})
    return Observed(
        {"every device was made": len(ids) == fleet.size},
        {"devices": len(ids), "first": ids[0], "roles": dict(fleet.roles)},
    )


@stage("serve")
def serve(fleet: SimFleet) -> Observed:
    """``trustfleet server run``, ready when its /readyz says every component is up."""
    server = fleet.srv.start()
    return Observed(
        {"the server is ready": server.ready()},
        {
            "https": server.base_url,
            "mqtts": f"localhost:{server.mqtt_port}",
            "pid": server.pid,
        },
    )


@stage("enroll")
def enroll(fleet: SimFleet) -> Observed:
    """Every agent boots and enrolls over EST, its key in its token."""
    for agent in fleet.agents.values():
        agent.start()
    total = len(fleet.device_ids)
    seen: list[int] = []

    def all_enrolled() -> bool:
        done = sum(1 for s in fleet.device_states().values() if s == "enrolled")
        if not seen or seen[-1] != done:
            seen.append(done)
            fleet.on_progress("agents enrolling over EST", done, total)
        return done == total

    enrolled = within(lambda: wait_until(all_enrolled, timeout_s=AGENT_TIMEOUT_S, what="enroll"))
    return Observed(
        {"every device enrolled": enrolled},
        {"enrolled": seen[-1] if seen else 0, "devices": total},
    )


@stage("telemetry")
def telemetry(fleet: SimFleet) -> Observed:
    """Every device's telemetry reaches the store through the broker and ingest."""
    zero = dict.fromkeys(fleet.device_ids, 0)
    flowing = within(
        lambda: fleet.wait_telemetry(
            fleet.device_ids, rows=_TELEMETRY_ROWS, since=zero, timeout_s=AGENT_TIMEOUT_S
        )
    )
    counts = fleet.telemetry_counts()
    return Observed(
        {f"{_TELEMETRY_ROWS} rows from every device": flowing},
        {"rows_per_device_min": min(counts.values(), default=0), "rows": sum(counts.values())},
    )


@stage("reenroll")
def reenroll(fleet: SimFleet) -> Observed:
    """One device renews its LDevID (``agent enroll --reenroll``) and keeps publishing."""
    agent = fleet.agent("reenroller")
    before = agent.ldevid().serial_number
    agent.stop()
    proc = agent.enroll(reenroll=True)
    after = agent.ldevid().serial_number
    since = fleet.telemetry_counts()
    agent.start()
    flowing = within(
        lambda: fleet.wait_telemetry(
            [agent.device_id], rows=2, since=since, timeout_s=AGENT_TIMEOUT_S
        )
    )
    return Observed(
        {
            "agent enroll --reenroll succeeded": proc.returncode == 0,
            "the LDevID is new": after != before,
            "telemetry flows after re-enrollment": flowing,
        },
        {
            "device": agent.device_id,
            "old_serial": format(before, "x"),
            "new_serial": format(after, "x"),
            "telemetry_after_reenroll": flowing,
        },
    )
