"""Scenarios over a :class:`~trustfleet.sim.fleet.SimFleet`: stages that return results.

Each stage is a callable ``(fleet) -> StageResult``. It waits (bounded) on the product's own
state (store rows, ``/readyz``, verdicts, OCSP), never on a fixed sleep or a log line, and an
error of any kind makes it a failed stage with a one-line reason. :data:`DEMO` is the
``trustfleet demo`` scenario, in order; a stage assumes the ones before it passed.
"""

from __future__ import annotations

from trustfleet.sim.scenarios._audit import audit
from trustfleet.sim.scenarios._common import DEMO_ROLES
from trustfleet.sim.scenarios._console import ConsoleLogin, console, console_login
from trustfleet.sim.scenarios._decommission import decommission
from trustfleet.sim.scenarios._detect import detect
from trustfleet.sim.scenarios._lwm2m import LWM2M_MODEL, lwm2m
from trustfleet.sim.scenarios._ota import rollback, update
from trustfleet.sim.scenarios._result import Observed, Stage, StageResult, one_line, stage
from trustfleet.sim.scenarios._setup import (
    enroll,
    init,
    provision,
    reenroll,
    release,
    serve,
    telemetry,
)
from trustfleet.sim.scenarios._trust import attest, heal, quarantine, revoke

__all__ = [
    "DEMO",
    "DEMO_ROLES",
    "LWM2M_MODEL",
    "ConsoleLogin",
    "Observed",
    "Stage",
    "StageResult",
    "console_login",
    "one_line",
    "stage",
]

DEMO: tuple[Stage, ...] = (
    init,
    release,
    provision,
    serve,
    enroll,
    telemetry,
    reenroll,
    update,
    rollback,
    attest,
    quarantine,
    heal,
    revoke,
    lwm2m,
    audit,
    detect,
    console,
    decommission,
)
"""The demo: a fleet is made, enrolls, updates, attests, loses a revoked member, and every
security decision of the story is in the tamper-evident audit log; the fleet's metrics catch an
exfiltrating device, which the playbook quarantines; the operator plane (API, console, metrics)
serves it all under roles; a constrained device speaks LwM2M over CoAP and DTLS to the same PKI,
releases and revocation; last, a device is retired: it wipes itself, proves it, and is refused
everywhere (it runs last so that no stage counts on that device)."""
