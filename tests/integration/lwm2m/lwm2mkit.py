"""Glue of the interop suites: a server with ``[lwm2m]`` enabled, LwM2M devices from the factory,
their keys read back from their own tokens, and the store's view of them.

Everything product-specific the Wakaama and coap-client suites need is here, so that a change of
the CLI or the store shows in one place.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from support.dtls_peers import read_token_secret
from support.server import RunningServer, running_server
from support.wakaama import free_udp_port, udp_bound
from trustfleet.sim.process import wait_until

__all__ = [
    "Lwm2mDevice",
    "Lwm2mServer",
    "lwm2m_server",
    "provision_lwm2m",
    "read_device_psk",
]

WAIT_S = 60.0

# The suites run once the LwM2M server (helper 3) is merged; until then they skip, by name.
pytest.importorskip("trustfleet.lwm2m.server", reason="the LwM2M server is not merged yet")


@dataclass
class Lwm2mServer:
    """A running server and the UDP port its LwM2M endpoint (DTLS) listens on."""

    server: RunningServer
    port: int

    def registration(self, device_id: str) -> Any:
        """The device's registration record in the store (live or ended), or None."""
        with self.server.runtime.uow.begin(read_only=True) as tx:
            return tx.lwm2m.registration(device_id)

    def live_registration(self, device_id: str) -> Any:
        """The registration if it is live (not ended), else None."""
        record = self.registration(device_id)
        return record if record is not None and record.ended_at is None else None

    def telemetry(self, device_id: str) -> list[Any]:
        """The device's telemetry rows (LwM2M notifications land here, like MQTT telemetry)."""
        with self.server.runtime.uow.begin(read_only=True) as tx:
            return list(tx.telemetry.list_for_device(device_id, limit=1000))

    def events(self, type_prefix: str, device_id: str | None = None) -> list[Any]:
        """Security events whose type starts with ``type_prefix`` (about ``device_id``)."""
        found = []
        for event in self.server.events_since(_EMPTY):
            if not event.type.startswith(type_prefix):
                continue
            if (
                device_id is None
                or device_id in json.dumps(event.details)
                or (getattr(event, "subject", "") or "").endswith(device_id)
            ):
                found.append(event)
        return found

    def wait(self, check: Any, what: str) -> Any:
        """Poll ``check`` until it is truthy (bounded)."""
        return wait_until(check, timeout_s=WAIT_S, what=what, poll_s=0.1)


@dataclass(frozen=True)
class _Snapshot:
    last_event_id: int = 0


_EMPTY: Any = _Snapshot()


@contextmanager
def lwm2m_server(
    tmp_path: Path, *, settings: Mapping[str, str] | None = None
) -> Iterator[Lwm2mServer]:
    """``server run`` with ``[lwm2m] enabled`` on a free UDP port (PSK-AES128-CCM8 allowed:
    Wakaama's tinydtls offers nothing else), observing object 3303 and the Device object."""
    port = free_udp_port()
    merged = {
        "lwm2m.enabled": "true",
        "lwm2m.port": str(port),
        "lwm2m.observe": '["/3303", "/3/0"]',
        "lwm2m.revocation_poll_s": "0.2",
        **(settings or {}),
    }
    with running_server(tmp_path, settings=merged) as server:
        # /readyz counts lwm2m#0 once its process is alive; its socket may come a moment later.
        wait_until(lambda: udp_bound(port), timeout_s=60, what=f"lwm2m#0 bound to UDP {port}")
        yield Lwm2mServer(server=server, port=port)


@dataclass(frozen=True)
class Lwm2mDevice:
    """A device folder the factory made for LwM2M."""

    device_id: str
    directory: Path

    @property
    def softhsm_conf(self) -> Path:
        return self.directory / "softhsm2.conf"

    @property
    def pin(self) -> str:
        return (self.directory / "secrets" / "token.pin").read_text().strip()


def provision_lwm2m(
    srv: Lwm2mServer, out: Path, *, security: str, bootstrap: bool = True, model: str = "lwm2m-v1"
) -> Lwm2mDevice:
    """``factory provision --protocol lwm2m --security SECURITY [--no-bootstrap]``."""
    args = ["factory", "provision", "--out", str(out), "--model", model,
            "--protocol", "lwm2m", "--security", security]  # fmt: skip
    if not bootstrap:
        args.append("--no-bootstrap")
    (row,) = srv.server.cli_json(*args)["devices"]
    return Lwm2mDevice(device_id=row["device_id"], directory=Path(row["directory"]))


def read_device_psk(device: Lwm2mDevice, *, label: str = "lwm2m-psk") -> bytes:
    """The PSK the factory put into the device's own token (a readable secret-key object, the
    constrained device's secure storage), read with ``pkcs11-tool`` as the device would."""
    return read_token_secret(softhsm_conf=device.softhsm_conf, pin=device.pin, label=label)
