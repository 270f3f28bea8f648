"""Revocation bites: CRL reload plus kick end a revoked device's session and its reconnects;
a decommission or a CA retirement ends a live session as a revocation does."""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from brokerkit_fixtures import Fleet, Mqtt

from support.waiting import eventually, logged
from trustfleet.broker import Broker
from trustfleet.services.revocation_feed import RevocationFeed
from trustfleet.services.runtime import Runtime
from trustfleet.settings import load_server_settings

DISCONNECT_WAIT_S = 10
SESSION_ENDING_EVENTS = ("device.revoked", "device.decommissioned", "device.ca_retired")


def openssl_verify(cafile: Path, crlfile: Path, cert: Path) -> str:
    result = subprocess.run(
        ["openssl", "verify", "-crl_check", "-CAfile", cafile, "-CRLfile", crlfile, cert],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result.stdout + result.stderr


def _wait_for_log(log: Path, *needles: str, after: int, timeout_s: float) -> bool:
    return eventually(lambda: logged(log, *needles, after=after), timeout_s=timeout_s, poll_s=0.02)


def test_revoked_device_is_kicked_and_refused(fleet: Fleet, broker: Broker, mqtt: Mqtt) -> None:
    victim = fleet.new_device("rev")
    log = broker.config.paths.log
    live = mqtt.sub(victim, [f"tf/v1/d/{victim.name}/cmd"], count=5, wait_s=20)
    watcher = None
    try:
        assert live.wait_subscribed(), live.finish()
        offset = log.stat().st_size
        t0 = time.monotonic()
        result = fleet.server.cli("device", "revoke", victim.name, "--reason", "keyCompromise")
        assert result.returncode == 0, result.stderr
        t_revoked = time.monotonic()
        broker.reload_crl(fleet.device_crl())
        t_reloaded = time.monotonic()
        gone = (f"Client {live.client_id} disconnected", f"Client {live.client_id} been disc")
        reload_alone = _wait_for_log(log, *gone, after=offset, timeout_s=0.5)
        t_kick = time.monotonic()
        broker.kick(victim.name)
        assert _wait_for_log(log, *gone, after=offset, timeout_s=DISCONNECT_WAIT_S), log.read_text()
        t_gone = time.monotonic()
        print(
            f"\nrevocation timings: revoke (CLI) {t_revoked - t0:.3f}s, CRL fetch + reload "
            f"{t_reloaded - t_revoked:.3f}s, kick {t_gone - t_kick:.3f}s, revoke->disconnect "
            f"{t_gone - t0:.3f}s (reload alone disconnected: {reload_alone})"
        )

        # The service watches the victim's namespace; B's marker shows the path still works.
        watcher = mqtt.sub(fleet.service, ["tf/v1/d/+/telemetry"], count=1, wait_s=10)
        assert watcher.wait_subscribed(), watcher.finish()
        refused = mqtt.pub(victim, f"tf/v1/d/{victim.name}/telemetry", "after-revoke")
        assert refused.returncode != 0, refused
        assert (
            mqtt.pub(fleet.b, f"tf/v1/d/{fleet.b.name}/telemetry", "b-still-works").returncode == 0
        )
        seen = watcher.finish()
        assert "b-still-works" in seen
        assert "after-revoke" not in seen
        # Mosquitto logs only "verify failed"; openssl names the reason with the same files.
        assert _wait_for_log(log, "certificate verify failed", after=offset, timeout_s=5)
        paths = broker.config.paths
        why = openssl_verify(paths.cafile, paths.crlfile, victim.cert)
        assert "certificate revoked" in why, why
    finally:
        live.close()
        if watcher is not None:
            watcher.close()
    assert live.proc.returncode is not None
    assert "after-revoke" not in "".join(live.lines)


def test_decommission_and_ca_retirement_end_the_session(
    fleet: Fleet, broker: Broker, mqtt: Mqtt
) -> None:
    """Regression: the revocation feed names a device after ``device.decommissioned`` and
    ``device.ca_retired`` too (not only ``device.revoked``), so the broker side kicks it.

    Each event is written to the running server's store as its service writes it; the feed
    (as server/_broker_side.py polls it) must name the device, and the kick ends its session.
    """
    device = fleet.new_device("cut")
    log = broker.config.paths.log
    gone_after = ("disconnected", "been disc")
    rt = Runtime.open(load_server_settings(fleet.server.home))
    try:
        feed = RevocationFeed(rt.uow, issuer="device")
        feed.prime()
        for event_type in SESSION_ENDING_EVENTS:
            live = mqtt.sub(device, [f"tf/v1/d/{device.name}/cmd"], count=5, wait_s=20)
            try:
                assert live.wait_subscribed(), live.finish()
                offset = log.stat().st_size
                with rt.uow.begin() as tx:
                    tx.events.append(
                        type=event_type, actor="test", subject=f"device:{device.name}",
                        details={}, now=datetime.now(UTC),
                    )  # fmt: skip
                cut = feed.poll().revoked_devices
                assert device.name in cut, (event_type, cut)
                broker.kick(device.name)
                gone = tuple(f"Client {live.client_id} {end}" for end in gone_after)
                assert _wait_for_log(log, *gone, after=offset, timeout_s=DISCONNECT_WAIT_S), (
                    event_type
                )
            finally:
                live.close()
    finally:
        rt.close()
