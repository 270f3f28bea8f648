"""Eclipse Wakaama (C, tinydtls) against our LwM2M server: an independent client implementation.

One device from the factory (PSK, bootstrap): Wakaama takes its bootstrap PSK from the device's
token, bootstraps (the server writes a fresh device-management credential into /0 and /1),
registers with it (the store shows the registration and its object links), is observed (a value
it changes reaches the telemetry store), its firmware object state is read and recorded, and after
``device revoke`` its session is closed and a new handshake with the same credentials is refused.
What Wakaama does on the wire is in docs/lwm2m.md (``## Independent peers``).
"""

from __future__ import annotations

from pathlib import Path

from lwm2mkit import Lwm2mServer, provision_lwm2m, read_device_psk

from support.wakaama import WakaamaClient, free_udp_port

WAKAAMA_DOWNLOADED = 1
"""Wakaama's example firmware object starts in state 1 (Downloaded) and stays there."""


def test_wakaama_bootstraps_registers_reports_and_is_cut_off(
    tmp_path: Path, srv: Lwm2mServer, wakaama_binary: Path
) -> None:
    device = provision_lwm2m(srv, tmp_path / "devices", security="psk", bootstrap=True)
    key = read_device_psk(device)
    assert len(key) >= 16
    client = WakaamaClient(
        wakaama_binary, server_port=srv.port, endpoint=device.device_id,
        psk_identity=device.device_id, psk_key=key, bootstrap=True, lifetime_s=60,
        log=tmp_path / "wakaama.log", local_port=free_udp_port(),
    )  # fmt: skip
    with client:
        client.wait_state("STATE_READY", timeout_s=60)
        assert "STATE_BOOTSTRAPPING" in client.states()

        # Registered with the credential the bootstrap server wrote, not the factory one.
        reg = srv.wait(lambda: srv.live_registration(device.device_id), "registration")
        assert reg.endpoint == device.device_id
        assert reg.mode == "psk"
        assert reg.lwm2m_version == "1.1"
        assert {"/3/0", "/5/0"} <= set(reg.objects)

        # Observed: a battery level typed on Wakaama's console reaches the telemetry store.
        before = len(srv.telemetry(device.device_id))
        client.command("change /3/0/9 42")
        srv.wait(lambda: len(srv.telemetry(device.device_id)) > before, "a notification stored")

        # The firmware object's state was read and recorded on the registration.
        fw = srv.wait(
            lambda: (r := srv.registration(device.device_id)) is not None
            and r.firmware_state is not None and r,
            "firmware state recorded",
        )  # fmt: skip
        assert fw.firmware_state == WAKAAMA_DOWNLOADED

        # Revocation closes the session and ends the registration.
        revoked = srv.server.cli("device", "revoke", device.device_id, "--reason", "keyCompromise")
        assert revoked.returncode == 0, revoked.stderr
        srv.wait(lambda: srv.live_registration(device.device_id) is None, "registration dropped")

    # A fresh client with the same (ended) credentials gets no session.
    again = WakaamaClient(
        wakaama_binary, server_port=srv.port, endpoint=device.device_id,
        psk_identity=device.device_id, psk_key=key, bootstrap=True, lifetime_s=60,
        log=tmp_path / "wakaama-again.log", local_port=free_udp_port(),
    )  # fmt: skip
    with again:
        srv.wait(lambda: srv.events("lwm2m.refused", device.device_id), "handshake refused")
    assert "STATE_READY" not in again.states()
    assert key.hex() not in srv.server.log.read_text(errors="replace")


def test_wakaama_with_unknown_psk_is_refused(
    tmp_path: Path, srv: Lwm2mServer, wakaama_binary: Path
) -> None:
    client = WakaamaClient(
        wakaama_binary, server_port=srv.port, endpoint="dev-unknown-0001",
        psk_identity="dev-unknown-0001", psk_key=b"\x11" * 16, bootstrap=True,
        log=tmp_path / "wakaama.log", local_port=free_udp_port(),
    )  # fmt: skip
    with client:
        srv.wait(lambda: srv.events("lwm2m.refused"), "refusal event")
    assert "STATE_READY" not in client.states()
    assert srv.registration("dev-unknown-0001") is None
