"""A real ``server run`` publishes its audit log over HTTPS, cosigned by a real witness.

One server (the harness's :class:`~trustfleet.sim.server.SimServer`, through a
:class:`~trustfleet.sim.fleet.SimFleet`) with a witness in ``[audit] witnesses`` (its own home,
token and key, ``witness serve`` in its own session) is started once for the module. Events
committed after it started reach the served checkpoint, which carries the witness's
cosignature; ``trustfleet audit verify --tiles https://…`` and the independent Go verifier read
the served tiles and agree; a tile path outside the tlog-tiles grammar, or one climbing out of
the published folder, is 404.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from support.server import curl
from support.tlogverify import verify_ok
from support.waiting import wait_for
from trustfleet.audit import (
    NoteError,
    Verifier,
    parse_checkpoint,
    parse_note,
    parse_verifier_key,
    verify_note,
)
from trustfleet.cli.main import main
from trustfleet.services.home import AUDIT_VKEY_FILE
from trustfleet.sim.fleet import SimFleet
from trustfleet.sim.server import https_status

pytestmark = pytest.mark.integration

ADDED = 300  # past one full level-0 tile (256) and one full entry bundle
T0 = datetime.now(UTC).replace(microsecond=0)
_MAX_NOTE_BYTES = 64 * 1024


@dataclass(frozen=True)
class Served:
    """The running server, its witness, and what a client needs to check the served log."""

    fleet: SimFleet
    events: int  # every event committed before the wait

    @property
    def base(self) -> str:
        return f"{self.fleet.srv.base_url}/audit/log"

    @property
    def ca(self) -> Path:
        return self.fleet.srv.ca_bundle

    @property
    def log_vkey(self) -> str:
        return (self.fleet.srv.home / AUDIT_VKEY_FILE).read_text(encoding="ascii").strip()

    @property
    def witness_vkey(self) -> str:
        assert self.fleet.witness is not None
        return self.fleet.witness.vkey

    def checkpoint(self) -> bytes:
        context = ssl.create_default_context(cafile=str(self.ca))
        url = f"{self.base}/checkpoint"
        with urllib.request.urlopen(url, context=context, timeout=10) as resp:  # noqa: S310 - https to our server
            assert resp.headers["cache-control"] == "no-store"
            body: bytes = resp.read(_MAX_NOTE_BYTES)
            return body


def _cosigned(served: Served, witness: Verifier) -> bytes | None:
    """The served checkpoint once it holds every event and the witness's cosignature."""
    try:
        note = served.checkpoint()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:  # nothing published yet
            return None
        raise
    parsed = parse_note(note)
    if parse_checkpoint(parsed.text).size < served.events:
        return None
    try:
        verify_note(parsed, verifiers=[witness])
    except NoteError:
        return None
    return note


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One server run with a witness, ADDED events committed while it runs."""
    fleet = SimFleet(tmp_path_factory.mktemp("served"))
    try:
        fleet.create_server(organization="Audit Served")
        fleet.add_witness(name="witness.test/w1")
        rt = fleet.srv.start().runtime
        with rt.uow.begin() as tx:
            for i in range(ADDED):
                tx.events.append(
                    type="device.registered", actor=f"operator:tester{i % 3}@host",
                    subject=f"device:d{i}", details={"n": i}, now=T0 + timedelta(milliseconds=i),
                )  # fmt: skip
            events = tx.events.last_id()
        yield Served(fleet=fleet, events=events)
    finally:
        fleet.stop()


@pytest.fixture(scope="module")
def note(served: Served) -> bytes:
    """The served checkpoint that holds every event, with the witness's cosignature."""
    witness = parse_verifier_key(served.witness_vkey)
    return wait_for(
        lambda: _cosigned(served, witness), what="the served checkpoint to hold every event"
    )


def test_the_served_checkpoint_is_signed_and_cosigned_by_the_configured_witness(
    served: Served, note: bytes
) -> None:
    log, witness = parse_verifier_key(served.log_vkey), parse_verifier_key(served.witness_vkey)
    parsed = parse_note(note)
    assert verify_note(parsed, verifiers=[log, witness]) == [log, witness]
    assert parse_checkpoint(parsed.text).size >= served.events > ADDED


def test_audit_verify_reads_the_served_log_over_https(
    served: Served, note: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    code = main(["audit", "verify", "--json", "--tiles", served.base, "--ca", str(served.ca),
                 "--key", served.log_vkey, "--witness", served.witness_vkey,
                 "--min-witnesses", "1"])  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["ok"], report
    assert report["checkpoint"]["size"] >= served.events
    assert any("cosigned by witness.test/w1" in line for line in report["checks"]), report


def test_the_go_verifier_reads_the_served_tiles(
    served: Served, note: bytes, tlogverify: Path
) -> None:
    result = verify_ok(tlogverify, "tiles", "--vkey", served.log_vkey, "--base", served.base,
                       "--cacert", served.ca)  # fmt: skip
    assert int(result["size"]) >= served.events


def test_a_full_tile_is_served(served: Served, note: bytes) -> None:
    assert https_status(f"{served.base}/tile/0/000", cafile=served.ca) == 200
    assert https_status(f"{served.base}/tile/entries/000", cafile=served.ca) == 200


@pytest.mark.parametrize(
    "path",
    [
        "tile/0/x000",  # no such form
        "tile/0/000.p/0",  # width 0
        "tile/0/000.p/256",  # a full tile is not partial
        "tile/00/000",  # a level with a leading zero
        "tile/0/../../../trustfleet.toml",  # sent as is: no climbing out
        "tile/entries/../../../trustfleet.toml",
        "tile/%2e%2e/%2e%2e/%2e%2e/trustfleet.toml",
        "tile/0/%2e%2e%2f%2e%2e%2f%2e%2e%2ftrustfleet.toml",
        "tile/..%2f..%2f..%2fsecrets/tf-service.pin",
    ],
)
def test_a_path_outside_the_tile_grammar_is_404(served: Served, path: str) -> None:
    got = curl("--path-as-is", "--cacert", served.ca, "-o", "/dev/null", "-w", "%{http_code}",
               f"{served.base}/{path}")  # fmt: skip
    assert got.returncode == 0, got.stderr
    assert got.stdout.decode() == "404", path
