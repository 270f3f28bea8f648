"""Helpers of the management API's contract tests (tests/integration/api/test_*.py).

* :func:`row_counts`: the number of rows of every table that a request could write, to show that
  a refused request wrote nothing.
* :func:`publish_release`: build and publish a small release of a model in a child process
  (the signing keys live in SoftHSM2; one configuration per process).
* :func:`csr_pem`: a fresh software key's CSR, PEM, for ``POST /factory/csr``.
* :func:`make_world`: a published release, a campaign and a command on top of the API tests'
  fleet (tests/integration/api/conftest.py), and real values for every path parameter.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import sqlalchemy
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import load_der_x509_csr

from support.sbom import write_sbom
from support.scripts import run_script
from support.server import RunningServer, make_csr_der, make_key

__all__ = [
    "MODEL", "UNWRITTEN_TABLES", "VERSION", "World", "csr_pem", "make_world", "publish_release",
    "row_counts",
]  # fmt: skip

MODEL: Final = "sim-v1"
VERSION: Final = "1.0.0"

UNWRITTEN_TABLES: Final = (
    "security_events", "operators", "api_tokens", "operator_sessions", "operator_passkeys",
    "device_commands", "devices", "certificates", "campaigns", "releases",
)  # fmt: skip
"""Tables a refused request must leave alone (the audit tiles follow the events)."""

_PUBLISH: Final = r"""
import json, sys
from datetime import UTC, datetime
from pathlib import Path
from trustfleet.services.ota import build_release, publish_release
from trustfleet.services.runtime import Runtime
from trustfleet.settings import load_server_settings

a = json.loads(sys.argv[1])
rt = Runtime.open(load_server_settings(Path(a["home"])))
build_release(rt, image=Path(a["image"]), version=a["version"], model=a["model"],
              min_version=None, now=datetime.now(UTC), sbom=Path(a["sbom"]))
publish_release(rt, model=a["model"], version=a["version"], now=datetime.now(UTC))
rt.close()
"""
_IMAGE_BYTES: Final = 64 * 1024


def row_counts(server: RunningServer, tables: tuple[str, ...] = UNWRITTEN_TABLES) -> dict[str, int]:
    """The number of rows of each of ``tables`` in the server's store."""
    engine: sqlalchemy.Engine = server.runtime.engine
    known = set(sqlalchemy.inspect(engine).get_table_names())
    missing = set(tables) - known
    assert not missing, f"no such tables: {sorted(missing)}"
    with engine.connect() as connection:
        return {
            name: int(
                connection.execute(
                    sqlalchemy.select(sqlalchemy.func.count()).select_from(sqlalchemy.table(name))
                ).scalar_one()
            )
            for name in tables
        }


def publish_release(server: RunningServer, work: Path, *, model: str, version: str) -> None:
    """Build and publish ``model`` ``version`` (a 64 KiB image) on the server's home."""
    image = work / f"{model}-{version}.bin"
    block = hashlib.sha256(f"{model} {version}".encode()).digest()
    image.write_bytes(block * (_IMAGE_BYTES // len(block)))
    args: dict[str, Any] = {
        "home": str(server.home), "image": str(image), "model": model, "version": version,
        "sbom": str(write_sbom(work / f"{model}-{version}.cdx.json")),
    }  # fmt: skip
    run_script(_PUBLISH, args, timeout_s=300)


def csr_pem(work: Path, *, device_id: str) -> str:
    """A PKCS#10 CSR with ``CN=device_id`` of a new software key, PEM."""
    key = make_key(work / f"{device_id}.key")
    csr = load_der_x509_csr(make_csr_der(key, cn=device_id))
    return csr.public_bytes(Encoding.PEM).decode("ascii")


@dataclass(frozen=True)
class World:
    """Real objects of a served home, for the routes' path parameters."""

    enrolled: tuple[str, ...]
    registered: tuple[str, ...]
    campaign: str
    command: str
    work: Path

    def path_parameters(self) -> dict[str, str]:
        """A real value for every path parameter of the API (an operator: ``op-admin``)."""
        return {
            "device_id": self.enrolled[0], "command_id": self.command, "campaign_id": self.campaign,
            "login": "op-admin", "model": MODEL, "version": VERSION, "entry_id": "1",
            "token_id": "nope", "alert_id": "1", "action_id": "1",
        }  # fmt: skip


def make_world(api: Any, fleet: Any, work: Path) -> World:
    """Publish :data:`MODEL` :data:`VERSION`, start a campaign of ``fleet.enrolled[2]`` and ping
    ``fleet.enrolled[1]`` through ``api`` (an ``ApiKit``) as an admin."""
    publish_release(api.server, work, model=MODEL, version=VERSION)
    body = {
        "version": VERSION,
        "devices": [fleet.enrolled[2]],
        "waves": [100],
        "max_failure_rate": 1,
    }
    campaign = api.post("/campaigns", body)
    assert campaign.status_code == 201, campaign.text
    command = api.post(f"/devices/{fleet.enrolled[1]}/commands", {"name": "ping"})
    assert command.status_code == 202, command.text
    return World(
        enrolled=fleet.enrolled, registered=fleet.registered, campaign=campaign.json()["id"],
        command=command.json()["id"], work=work,
    )  # fmt: skip
