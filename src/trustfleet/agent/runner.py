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
from datetime import datetime
from typing import TYPE_CHECKING, Any

from trustfleet import product_version
from trustfleet.agent._messages import (
    Command,
    new_boot_id,
    parse_command,
    read_rss_kb,
    render,
    simulated_metrics,
)
from trustfleet.agent._runparts import (
    Mode,
    RunSummary,
    enroll_when_released,
    load_cert,
    next_time,
    require_cert,
)
from trustfleet.agent._tls import token_key
from trustfleet.agent._tpmhooks import ensure_ak_enrolled
from trustfleet.agent.attester import Attester
from trustfleet.agent.certfacts import CertFacts
from trustfleet.agent.decommission import answer_decommission, refuse_if_decommissioned
from trustfleet.agent.link import Link, MqttLink, topic
from trustfleet.agent.link311 import Mqtt311Link
from trustfleet.agent.metrics import MetricsReporter, metrics_reporter
from trustfleet.agent.outbox import Message, Outbox
from trustfleet.agent.platform.bootloader import BootResult
from trustfleet.agent.platform.faults import NO_FAULTS, Faults
from trustfleet.agent.rekey import answer_reenroll, key_matches, recover_rekey
from trustfleet.agent.settings import DeviceSettings, require_mqtt
from trustfleet.agent.updater.worker import REBOOT_EXIT_CODE, OtaWorker, UpdateJob
from trustfleet.errors import TrustFleetError, Unavailable

if TYPE_CHECKING:
    from trustfleet.agent.updater.engine import UpdateRequest

__all__ = ["RunSummary", "run_agent"]

logger = logging.getLogger(__name__)

_TICK_S = 0.2
_STOP_CLIENT_S = 5.0


def run_agent(
    settings: DeviceSettings,
    *,
    once: bool,
    stop: threading.Event | None,
    now: Callable[[], datetime],
    on_summary: Callable[[RunSummary], None] | None = None,
    boot: BootResult | None = None,
    update: UpdateJob | None = None,
    faults: Faults = NO_FAULTS,
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
        boot: What the bootloader booted (None: a device without a boot chain). The agent
            then recovers the updater's state (a new slot's health check and commit).
        update: Recover, run this update (if any) and stop (``trustfleet-agent update``),
            instead of the schedule.
        faults: Injected faults (the simulation's test seam; default none).

    Returns:
        0 after a clean run; :data:`REBOOT_EXIT_CODE` when the updater asks for a reboot.

    Raises:
        Config: The settings are incomplete or the PIN file is unsafe.
        PermissionDenied: The service refused the enrollment.
        Unavailable: The service or the broker could not be reached (``once``), or the
            messages were not acknowledged in time.
    """
    refuse_if_decommissioned(settings.directory)
    agent = _Agent(settings, now=now, stop=stop or threading.Event(), boot=boot, faults=faults)
    try:
        if update is not None:
            agent.run_update(update.request)
        elif once:
            agent.run_once()
        else:
            agent.run_forever()
    finally:
        agent.close()
        if on_summary is not None:
            on_summary(agent.summary())
    return agent.exit_code


class _Agent:
    def __init__(
        self,
        settings: DeviceSettings,
        *,
        now: Callable[[], datetime],
        stop: threading.Event,
        boot: BootResult | None = None,
        faults: Faults = NO_FAULTS,
    ) -> None:
        self.settings = settings
        self.mqtt = require_mqtt(settings)
        self.key = token_key(settings)  # reads the PIN: an unsafe PIN file fails here
        self.now = now
        self.stop = stop
        self.outbox = Outbox(max_messages=self.mqtt.queue_max_messages)
        self.commands: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self.wake = threading.Event()
        self.link: Link | None = None
        self._address = 0  # which of [mqtt] host and fallback the link uses
        self._down_since: float | None = None  # when the link was last seen without connection
        self.cert: CertFacts | None = None
        self.started = time.monotonic()
        self.seq = 0
        self.boot_id = new_boot_id()  # with seq, names each message (docs/mqtt.md)
        self.ticks = 0
        self.past_connections = 0
        self.next_renewal_try = 0.0
        self.result = RunSummary(device_id=settings.device.id)
        self.exit_code = 0
        self.ota = OtaWorker(settings, boot=boot, now=now, notify=self.wake.set,
                             link_connected=lambda: self.link is not None and self.link.connected,
                             identity_ok=self._identity_ok, faults=faults)  # fmt: skip
        self.attester = Attester(settings.directory, boot=boot, notify=self.wake.set)
        self.reporter: MetricsReporter | None = metrics_reporter(settings, faults=faults, now=now)
        self.version = product_version()

    # -- identity ---------------------------------------------------------------------------

    def ensure_identity(self) -> None:
        recover_rekey(self.settings)  # a re-key interrupted after its certificate arrived
        path = self.settings.path(self.settings.identity.ldevid)
        cert = load_cert(path) if path.is_file() else None
        # The LDevID certifies the identity key (the IDevID's, or the one a re-key recorded):
        # comparing public keys needs neither the token nor `cryptography` (agent/rekey.py).
        idevid = require_cert(self.settings.path(self.settings.identity.idevid))
        when = self.now()
        same_key = cert is not None and key_matches(self.settings, ldevid=cert, idevid=idevid)
        if cert is None or not same_key or cert.not_after <= when:
            why = "no LDevID" if cert is None else "LDevID unusable (other key or expired)"
            logger.info("%s: enrolling with the IDevID", why)
            self.cert = enroll_when_released(self.settings, "enroll", now=self.now)
            self.result.enrolled = True
            return
        self.cert = cert
        if self._renewal_due():
            self._renew()

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
            self.cert = enroll_when_released(self.settings, mode, now=self.now)
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

    def _start_link(self) -> Link:
        mqtt_max = self.mqtt.max_payload_bytes
        # [mqtt] protocol: MQTT 5, or 3.1.1 for a broker without it (RabbitMQ 3.10)
        kind: type[MqttLink] | type[Mqtt311Link] = (
            Mqtt311Link if self.mqtt.protocol == "3.1.1" else MqttLink
        )
        addresses = self.mqtt.addresses()
        host, port = addresses[self._address % len(addresses)]
        link = self.link = kind(
            self.settings,
            mqtt=self.mqtt.model_copy(update={"host": host, "port": port}),
            key=self.key,
            client_cert=self.settings.path(self.settings.identity.ldevid),
            outbox=self.outbox,
            on_command=self._on_command,
            on_ota_command=lambda raw: self.ota.on_ota_command(raw, max_bytes=mqtt_max),
            on_challenge=self.attester.submit if self.attester.enabled() else None,
            on_change=self.wake.set,
        )
        link.start()
        return link

    def _fail_over(self, now: float) -> None:
        """After ``[mqtt] failover_after_s`` without a connection, try the next address."""
        link = self.link
        if link is None or link.connected or len(self.mqtt.fallback) == 0:
            self._down_since = None
            return
        if self._down_since is None:
            self._down_since = now
            return
        if now - self._down_since < self.mqtt.failover_after_s:
            return
        self._down_since = None
        self._address += 1
        addresses = self.mqtt.addresses()
        host, port = addresses[self._address % len(addresses)]
        logger.warning("no broker connection for %.0f s; trying %s:%d", self.mqtt.failover_after_s,
                       host, port)  # fmt: skip
        self._drop_link()
        self._start_link()

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
        self.attester.close()

    def before_wipe(self) -> None:
        self.attester.close()  # the wipe's child uses the TPM: no challenge meanwhile

    # -- messages ---------------------------------------------------------------------------

    def emit(self, leaf: str, document: dict[str, Any]) -> int:
        self.seq += 1
        max_bytes = self.mqtt.max_payload_bytes
        payload = render(
            document, seq=self.seq, now=self.now(), max_bytes=max_bytes, boot=self.boot_id
        )
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
        if command.name == "update":
            return self.ota.answer_update(command.id, command.args)
        if command.name == "reenroll":
            return answer_reenroll(self, command)
        if command.name == "decommission":
            return answer_decommission(self, command)
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
            "firmware_version": summary.firmware_version,
            "slot": summary.slot,
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
        boot, outcome = self.ota.boot, self.ota.outcome
        r.firmware_version, r.slot = (boot.version, boot.slot) if boot else ("", "")
        if outcome is not None:
            r.ota_state, r.ota_version = outcome.state, outcome.version or ""
            r.ota_reason, r.ota_code = outcome.reason, outcome.code
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
        ensure_ak_enrolled(self.settings)  # once, in a child process (TPM devices only)
        self._start_link()
        self.emit("events", {"type": "agent.started", "details": self._cert_details()})
        self.ota.start(recover=True, request=None)
        telemetry_s, heartbeat_s = self.mqtt.telemetry_interval_s, self.mqtt.heartbeat_interval_s
        next_telemetry = next_heartbeat = time.monotonic()
        while not self.stop.is_set():
            t = time.monotonic()
            if t >= next_telemetry:
                self.emit_telemetry()
                next_telemetry = next_time(next_telemetry, telemetry_s, t)
            if t >= next_heartbeat:
                self.emit_heartbeat()
                next_heartbeat = next_time(next_heartbeat, heartbeat_s, t)
            self.answer_commands()
            self._emit_ota()
            self._emit_evidence()
            self._emit_metrics(t)
            if self.ota.reboot.is_set():
                self.exit_code = REBOOT_EXIT_CODE
                self._deliver_before_exit()
                break
            if self._renewal_due():
                self._renew()
            self._fail_over(t)
            self._pump()
            due = min(next_telemetry, next_heartbeat, self._metrics_due())
            if self._down_since is not None:
                due = min(due, self._down_since + self.mqtt.failover_after_s)
            self._wait(due - time.monotonic())
        self._flush()

    def run_update(self, request: UpdateRequest | None) -> None:
        """Recover after the boot, then run ``request`` (None: recover only), to its end."""
        self.ensure_identity()
        self._start_link()
        if not self.ota.start(recover=True, request=request):
            return  # no boot chain: nothing to run
        while not self.ota.finished.is_set() and not self.stop.is_set():
            self._emit_ota()
            self._pump()
            self._wait(_TICK_S)
        self._emit_ota()
        if self.ota.reboot.is_set():
            self.exit_code = REBOOT_EXIT_CODE
        self._deliver_before_exit()

    def _deliver_before_exit(self) -> None:
        # Reports must leave before a reboot or the end: wait (bounded) for the link too.
        try:
            self._deliver(set(range(1, self.seq + 1)), timeout_s=self.settings.agent.once_timeout_s)
        except Unavailable as exc:
            logger.warning("%s", exc.one_line())

    def _emit_ota(self) -> None:
        for document in self.ota.drain():
            self.emit("ota/status", document)

    def _emit_evidence(self) -> None:
        for payload in self.attester.drain():  # the raw evidence (docs/attestation.md)
            self._put_raw("attest/evidence", payload)

    def _put_raw(self, leaf: str, payload: bytes) -> None:
        self.seq += 1
        where = topic(self.settings.device.id, leaf)
        self.outbox.put(Message(seq=self.seq, topic=where, payload=payload))

    def _emit_metrics(self, mono: float) -> None:
        payload = self.reporter.due(mono) if self.reporter is not None else None
        if payload is not None:  # a Device Defender report (docs/mqtt.md, metrics)
            self._put_raw("metrics", payload)
            self.result.published["metrics"] = self.result.published.get("metrics", 0) + 1

    def _metrics_due(self) -> float:
        return self.reporter.next_due() if self.reporter is not None else float("inf")

    def _identity_ok(self) -> bool:
        return self.cert is not None and self.cert.not_after > self.now()

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
