"""The agent's main loop: identity first, then the MQTT link, a schedule, commands, renewal.

``run_agent`` owns no signal handlers: the caller (the CLI) sets ``stop`` on SIGTERM/SIGINT.
Ordering inside one process matters: the identity key is read and the CSR signed through
``trustfleet.keystore`` (python-pkcs11) only while no awscrt TLS context is logged in to the
token, so the MQTT client is stopped and released before a re-enrollment and rebuilt after it.
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from typing import Any, Literal

from trustfleet.agent._messages import (
    Command,
    parse_command,
    read_rss_kb,
    render,
    simulated_metrics,
)
from trustfleet.agent._tls import token_key
from trustfleet.agent.certfacts import CertFacts, read_pem_cert_facts
from trustfleet.agent.link import MqttLink, topic
from trustfleet.agent.outbox import Message, Outbox
from trustfleet.agent.settings import DeviceSettings, require_mqtt
from trustfleet.errors import Conflict, InvalidInput, TrustFleetError, Unavailable

Mode = Literal["enroll", "reenroll"]

__all__ = ["RunSummary", "run_agent"]

logger = logging.getLogger(__name__)

_TICK_S = 0.2
_STOP_CLIENT_S = 5.0
_TOKEN_RELEASE_S = 10.0  # how long a re-enrollment waits for awscrt to release the token


@dataclass
class RunSummary:
    """What a run did (``--once --json`` prints it)."""

    device_id: str
    enrolled: bool = False
    reenrolled: int = 0
    published: dict[str, int] = field(default_factory=dict)
    acked: int = 0
    rejected: int = 0
    queue_depth: int = 0
    queue_dropped: int = 0
    commands_answered: int = 0
    reconnects: int = 0
    ldevid_serial: str = ""
    ldevid_not_after: str = ""
    rss_kb: int = 0


def run_agent(
    settings: DeviceSettings,
    *,
    once: bool,
    stop: threading.Event | None,
    now: Callable[[], datetime],
    on_summary: Callable[[RunSummary], None] | None = None,
) -> int:
    """Run the device agent until ``stop`` is set (or one round with ``once``).

    Args:
        settings: The device's settings (``[mqtt]`` is required).
        once: Enroll if needed, connect, publish one telemetry message and one heartbeat,
            wait (bounded) for their PUBACKs, answer commands that arrived, disconnect.
        stop: Set it to end the run cleanly (queued messages are flushed for up to
            ``[agent] shutdown_flush_s``).
        now: The clock (timestamps and certificate renewal).
        on_summary: Receives what the run did, at the end.

    Returns:
        0 after a clean run.

    Raises:
        Config: The settings are incomplete or the PIN file is unsafe.
        PermissionDenied: The service refused the enrollment.
        Unavailable: The service or the broker could not be reached (``once``), or the
            messages were not acknowledged in time.
    """
    agent = _Agent(settings, now=now, stop=stop or threading.Event())
    try:
        if once:
            agent.run_once()
        else:
            agent.run_forever()
    finally:
        agent.close()
        if on_summary is not None:
            on_summary(agent.summary())
    return 0


class _Agent:
    def __init__(
        self, settings: DeviceSettings, *, now: Callable[[], datetime], stop: threading.Event
    ) -> None:
        self.settings = settings
        self.mqtt = require_mqtt(settings)
        self.key = token_key(settings)  # reads the PIN: an unsafe PIN file fails here
        self.now = now
        self.stop = stop
        self.outbox = Outbox(max_messages=self.mqtt.queue_max_messages)
        self.commands: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self.wake = threading.Event()
        self.link: MqttLink | None = None
        self.cert: CertFacts | None = None
        self.started = time.monotonic()
        self.seq = 0
        self.ticks = 0
        self.past_connections = 0
        self.next_renewal_try = 0.0
        self.result = RunSummary(device_id=settings.device.id)
        try:
            self.version = metadata.version("trustfleet")
        except metadata.PackageNotFoundError:
            self.version = "unknown"

    # -- identity ---------------------------------------------------------------------------

    def ensure_identity(self) -> None:
        path = self.settings.path(self.settings.identity.ldevid)
        cert = _load_cert(path) if path.is_file() else None
        # The LDevID certifies the same identity key as the IDevID: comparing their public keys
        # needs neither the token nor `cryptography` (kept out of the agent's steady state).
        idevid = _load_cert(self.settings.path(self.settings.identity.idevid))
        when = self.now()
        same_key = cert is not None and idevid is not None and cert.spki == idevid.spki
        if cert is None or not same_key or cert.not_after <= when:
            why = "no LDevID" if cert is None else "LDevID unusable (other key or expired)"
            logger.info("%s: enrolling with the IDevID", why)
            self.cert = self._enroll("enroll")
            self.result.enrolled = True
            return
        self.cert = cert
        if self._renewal_due():
            self._renew()

    def _enroll(self, mode: Mode) -> CertFacts:
        # Loaded here: enrollment needs `cryptography` and the token library; the steady state
        # does not, and the agent's resident memory stays lower without them.
        from trustfleet.agent.est import enroll_device  # noqa: PLC0415

        deadline = time.monotonic() + _TOKEN_RELEASE_S
        while True:
            try:
                outcome = enroll_device(self.settings, mode=mode, now=self.now())
                return read_pem_cert_facts(outcome.path.read_bytes())
            except Conflict:
                # awscrt still holds a logged-in session of the released MQTT client.
                if time.monotonic() >= deadline:
                    raise
                gc.collect()
                time.sleep(0.1)

    def _renewal_due(self) -> bool:
        if self.cert is None or time.monotonic() < self.next_renewal_try:
            return False
        fraction = self.settings.agent.reenroll_at_fraction
        return self.cert.renewal_due_at(fraction) <= self.now()

    def _renew(self) -> None:
        if self.cert is None:
            return
        self.next_renewal_try = time.monotonic() + self.settings.agent.reenroll_retry_s
        expired = self.cert.not_after <= self.now()
        mode: Mode = "enroll" if expired else "reenroll"
        logger.info("LDevID %x is due for renewal: %sing", self.cert.serial, mode)
        had_link = self.link is not None
        self._drop_link()
        try:
            self.cert = self._enroll(mode)
        except TrustFleetError as exc:
            logger.warning("renewal failed: %s (next try in %.0fs)", exc.one_line(),
                           self.settings.agent.reenroll_retry_s)  # fmt: skip
        else:
            self.result.reenrolled += 1
            serial = format(self.cert.serial, "x")
            logger.info("re-enrolled; new LDevID serial %s", serial)
            self.emit("events", {"type": "agent.reenrolled", "details": self._cert_details()})
        if had_link:
            self._start_link()

    # -- link -------------------------------------------------------------------------------

    def _start_link(self) -> MqttLink:
        link = self.link = MqttLink(
            self.settings,
            mqtt=self.mqtt,
            key=self.key,
            client_cert=self.settings.path(self.settings.identity.ldevid),
            outbox=self.outbox,
            on_command=self._on_command,
            on_change=self.wake.set,
        )
        link.start()
        return link

    def _drop_link(self) -> None:
        link, self.link = self.link, None
        if link is None:
            return
        link.stop(timeout_s=_STOP_CLIENT_S)
        self.past_connections += link.connections
        del link
        gc.collect()  # release the awscrt client, its TLS context and its token session

    def _on_command(self, raw: bytes) -> None:
        self.commands.put(raw)
        self.wake.set()

    def close(self) -> None:
        self._drop_link()

    # -- messages ---------------------------------------------------------------------------

    def emit(self, leaf: str, document: dict[str, Any]) -> int:
        self.seq += 1
        max_bytes = self.mqtt.max_payload_bytes
        payload = render(document, seq=self.seq, now=self.now(), max_bytes=max_bytes)
        device_id = self.settings.device.id
        self.outbox.put(Message(seq=self.seq, topic=topic(device_id, leaf), payload=payload))
        self.result.published[leaf] = self.result.published.get(leaf, 0) + 1
        self.wake.set()
        return self.seq

    def emit_telemetry(self) -> int:
        self.ticks += 1
        metrics = simulated_metrics(
            self.settings.device.id, tick=self.ticks, uptime_s=time.monotonic() - self.started
        )
        return self.emit("telemetry", {"metrics": metrics})

    def emit_heartbeat(self) -> int:
        details = {"uptime_s": round(time.monotonic() - self.started, 1),
                   "queue_depth": len(self.outbox)}  # fmt: skip
        return self.emit("events", {"type": "heartbeat", "details": details})

    def answer_commands(self) -> None:
        while True:
            try:
                raw = self.commands.get_nowait()
            except queue.Empty:
                return
            command = parse_command(raw, max_bytes=self.mqtt.max_payload_bytes)
            if isinstance(command, str):
                logger.warning("ignored a command: %s", command)
                continue
            self.emit("cmd/result", self._answer(command))
            self.result.commands_answered += 1

    def _answer(self, command: Command) -> dict[str, Any]:
        logger.info("command %s (%s)", command.name, command.id)
        if command.name == "ping":
            return {"id": command.id, "ok": True, "result": {"pong": True}}
        if command.name == "report":
            return {"id": command.id, "ok": True, "result": self.report()}
        return {"id": command.id, "ok": False, "result": {},
                "error": f"unknown command '{command.name[:64]}'"}  # fmt: skip

    def report(self) -> dict[str, Any]:
        summary = self.summary()
        return {
            "device_id": self.settings.device.id,
            "model": self.settings.device.model,
            "agent_version": self.version,
            "ldevid_serial": summary.ldevid_serial,
            "ldevid_not_after": summary.ldevid_not_after,
            "uptime_s": round(time.monotonic() - self.started, 1),
            "queue_depth": summary.queue_depth,
            "queue_dropped": summary.queue_dropped,
            "reconnects": summary.reconnects,
            "rss_kb": summary.rss_kb,
        }

    def _cert_details(self) -> dict[str, str]:
        if self.cert is None:
            return {"serial": "", "not_after": ""}
        return {
            "serial": format(self.cert.serial, "x"),
            "not_after": self.cert.not_after.isoformat(),
        }

    def summary(self) -> RunSummary:
        r = self.result
        details = self._cert_details()
        r.ldevid_serial, r.ldevid_not_after = details["serial"], details["not_after"]
        r.acked, r.rejected = self.outbox.delivered, self.outbox.rejected
        r.queue_depth, r.queue_dropped = len(self.outbox), self.outbox.dropped
        connections = self.past_connections + (self.link.connections if self.link else 0)
        r.reconnects = max(connections - 1, 0)
        r.rss_kb = read_rss_kb()
        return r

    # -- runs -------------------------------------------------------------------------------

    def _wait(self, seconds: float) -> None:
        self.wake.wait(min(seconds, _TICK_S))
        self.wake.clear()

    def _pump(self) -> None:
        if self.link is not None:
            self.link.pump()

    def run_once(self) -> None:
        self.ensure_identity()
        link = self._start_link()
        link.wait_connected(timeout_s=self.mqtt.connect_timeout_s, poll=self._wait)
        wanted = {self.emit_telemetry(), self.emit_heartbeat()}
        self._deliver(wanted, timeout_s=self.settings.agent.once_timeout_s)
        self.answer_commands()
        self._deliver(set(range(1, self.seq + 1)), timeout_s=self.settings.agent.once_timeout_s)

    def _deliver(self, seqs: set[int], *, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.outbox.pending(seqs):
            if time.monotonic() >= deadline or self.stop.is_set():
                left = len(self.outbox.pending(seqs))
                raise Unavailable(
                    f"{left} message(s) not acknowledged by the broker within {timeout_s:.0f}s",
                    hint="check the broker and the agent's log",
                    code="agent.mqtt.unacked",
                )
            self._pump()
            self._wait(deadline - time.monotonic())

    def run_forever(self) -> None:
        self.ensure_identity()
        self._start_link()
        self.emit("events", {"type": "agent.started", "details": self._cert_details()})
        telemetry_s, heartbeat_s = self.mqtt.telemetry_interval_s, self.mqtt.heartbeat_interval_s
        next_telemetry = next_heartbeat = time.monotonic()
        while not self.stop.is_set():
            t = time.monotonic()
            if t >= next_telemetry:
                self.emit_telemetry()
                next_telemetry = _next(next_telemetry, telemetry_s, t)
            if t >= next_heartbeat:
                self.emit_heartbeat()
                next_heartbeat = _next(next_heartbeat, heartbeat_s, t)
            self.answer_commands()
            if self._renewal_due():
                self._renew()
            self._pump()
            self._wait(min(next_telemetry, next_heartbeat) - time.monotonic())
        self._flush()

    def _flush(self) -> None:
        deadline = time.monotonic() + self.settings.agent.shutdown_flush_s
        while len(self.outbox) and self.link is not None and self.link.connected:
            if time.monotonic() >= deadline:
                break
            self._pump()
            self._wait(deadline - time.monotonic())
        if len(self.outbox):
            logger.warning("stopping with %d message(s) undelivered", len(self.outbox))
        logger.info("agent stopped")


def _next(previous: float, interval: float, current: float) -> float:
    following = previous + interval
    return following if following > current else current + interval


def _load_cert(path: Any) -> CertFacts | None:
    try:
        return read_pem_cert_facts(path.read_bytes())
    except (InvalidInput, OSError):
        logger.warning("%s is not a PEM certificate; enrolling again", path)
        return None
