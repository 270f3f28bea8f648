"""``server run`` with ``[lwm2m] enabled``: the lwm2m#0 child serves on the real backend.

A device with a ``dm`` PSK in the store registers with libcoap's coap-client-openssl; the
registration lands in the store; /readyz lists the LwM2M workers.
"""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from lwm2mkit import lwm2m_server

from trustfleet.services.lwm2m import lwm2m_backend
from trustfleet.settings.server import load_server_settings

KEY = b"worker-test-psk-0123"
DEVICE = "lw-worker-0001"


def test_server_run_serves_lwm2m(tmp_path: Path) -> None:
    with lwm2m_server(tmp_path) as srv:  # handed out once lwm2m#0 holds its UDP port
        server, port = srv.server, srv.port
        components = server.request("GET", "/readyz").json()["components"]
        assert any(c["name"] == "workers.lwm2m" and c["up"] for c in components), components
        now = datetime.now(UTC)
        with lwm2m_backend(load_server_settings(server.home)) as backend:
            with backend.rt.uow.begin() as tx:
                tx.devices.add(id=DEVICE, model="sim-v1", protocol="lwm2m", now=now)
                nonce, ciphertext = backend.vault.encrypt(
                    KEY, identity=f"{DEVICE}:dm", device_id=DEVICE
                )
                tx.lwm2m.add_credential(
                    identity=f"{DEVICE}:dm", device_id=DEVICE, purpose="dm",
                    ciphertext=ciphertext, nonce=nonce, now=now,
                )  # fmt: skip
            result = subprocess.run(
                ["coap-client-openssl", "-u", f"{DEVICE}:dm", "-k", KEY.decode(), "-B", "20",
                 "-m", "post", "-t", "40", "-e", "</3/0>,</3303/0>",
                 f"coaps://127.0.0.1:{port}/rd?ep={DEVICE}&lt=60&lwm2m=1.1"],
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            assert result.returncode == 0, result.stderr
            found = None
            for _ in range(300):
                with backend.rt.uow.begin(read_only=True) as tx:
                    found = tx.lwm2m.registration(DEVICE)
                if found is not None:
                    break
                time.sleep(0.1)
            assert found is not None, (result.stdout, result.stderr)
