"""The log asks a real witness to cosign its checkpoints (services/audit_witnesses.py).

A server home with `[audit] witnesses` pointing at a `trustfleet witness serve` of its own home:
checkpoints are cosigned and the cosignature is in the published checkpoint; a log that forgot
what the witness cosigned recovers from its 409; a compromised server that presents a tree not
extending the cosigned one is refused by the witness, which records an alert, and the refusal
is a security event of the log.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from support.runtimes import opened_home
from support.witnesses import Witness, running_witness
from trustfleet.audit.checkpoint import Checkpoint, parse_checkpoint
from trustfleet.audit.note import (
    format_note,
    parse_note,
    parse_verifier_key,
    sign_note,
    verify_note,
)
from trustfleet.cli.main import main
from trustfleet.services.audit import current_note, on_each, publish_dir
from trustfleet.services.audit_witnesses import gather_cosignatures
from trustfleet.services.runtime import Runtime
from trustfleet.settings import load_server_settings, update_server_settings

T0 = datetime.now(UTC).replace(microsecond=0)


@dataclass
class Setup:
    home: Path
    rt: Runtime
    witness: Witness

    def add(self, count: int) -> int:
        with self.rt.uow.begin() as tx:
            for i in range(count):
                tx.events.append(type="device.registered", actor="system", subject=f"device:d{i}",
                                 details={"i": i}, now=T0 + timedelta(seconds=i))  # fmt: skip
        done = on_each(self.rt, now=lambda: T0)
        assert done is not None
        return done.checkpoint.size


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    home = tmp_path / "home"
    with opened_home(home, organization="Witnessed", now=T0) as made:
        vkey = (home / "public" / "audit-log.vkey").read_text().strip()
        del made
    with running_witness(tmp_path / "witness", name="witness.test/w1", log_vkey=vkey) as witness:
        update_server_settings(home, {"audit": {"witnesses": [{
            "url": witness.url, "key": witness.vkey,
            "ca": str(witness.home / "public" / "witness-tls.pem"),
        }]}})  # fmt: skip
        rt = Runtime.open(load_server_settings(home))
        try:
            yield Setup(home=home, rt=rt, witness=witness)
        finally:
            rt.close()


def _cosigned_by(note: bytes, witness: Witness) -> bool:
    verifier = parse_verifier_key(witness.vkey)
    return verify_note(parse_note(note), verifiers=[verifier]) == [verifier]


def test_checkpoints_are_cosigned_and_published_with_the_cosignature(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    setup.add(5)
    assert gather_cosignatures(setup.rt, now=T0) == 1
    assert gather_cosignatures(setup.rt, now=T0) == 0  # nothing new to ask
    size = setup.add(300)  # the witness gets a consistency proof from what it cosigned
    assert gather_cosignatures(setup.rt, now=T0) == 1
    published = (publish_dir(setup.rt) / "checkpoint").read_bytes()
    assert published == current_note(setup.rt) and _cosigned_by(published, setup.witness)
    assert parse_checkpoint(parse_note(published).text).size == size
    capsys.readouterr()
    code = main(["audit", "verify", "--json", "--home", str(setup.home),
                 "--witness", setup.witness.vkey, "--min-witnesses", "1"])  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and any("cosigned by witness.test/w1" in c for c in report["checks"])


def test_a_log_that_forgot_what_was_cosigned_recovers_from_the_409(setup: Setup) -> None:
    setup.add(5)
    assert gather_cosignatures(setup.rt, now=T0) == 1
    with sqlite3.connect(setup.home / "db" / "trustfleet.sqlite3") as conn:
        conn.execute("DELETE FROM audit_cosignatures")  # e.g. a restored backup
    setup.add(20)
    assert gather_cosignatures(setup.rt, now=T0) == 1  # 409 → asked again from the size it has
    assert _cosigned_by(current_note(setup.rt), setup.witness)


def test_a_tree_that_does_not_extend_the_cosigned_one_is_refused_and_recorded(
    setup: Setup,
) -> None:
    size = setup.add(40)
    assert gather_cosignatures(setup.rt, now=T0) == 1
    # A compromised server (it holds the token) signs a larger tree with another history.
    fork = Checkpoint(origin=setup.rt.settings.audit.origin, size=size + 9, root=b"\x66" * 32)
    note = format_note(sign_note(fork.text(), name=fork.origin, signer=setup.rt.audit_key()))
    setup.add(9)  # the real tree reaches the fork's size; its tiles give the proof
    with sqlite3.connect(setup.home / "db" / "trustfleet.sqlite3") as conn:
        conn.execute("DROP TRIGGER audit_checkpoints_no_delete")
        conn.execute("DELETE FROM audit_checkpoints WHERE size = ?", (size + 9,))
        conn.execute(
            "INSERT INTO audit_checkpoints (size, root, note, signed_at) VALUES (?, ?, ?, ?)",
            (size + 9, fork.root, note, T0.replace(tzinfo=None).isoformat(sep=" ")),
        )
    assert gather_cosignatures(setup.rt, now=T0) == 0
    with setup.rt.uow.begin(read_only=True) as tx:
        [event] = tx.events.list(type="audit.witness_refused")
    assert event.outcome == "refused" and event.details["status"] == 422
    assert event.subject == "witness:witness.test/w1"
    alerts = setup.witness.cli_json("alerts")["alerts"]
    assert isinstance(alerts, list) and len(alerts) == 1
    assert gather_cosignatures(setup.rt, now=T0) == 0  # the same refusal is recorded once
    with setup.rt.uow.begin(read_only=True) as tx:
        assert len(tx.events.list(type="audit.witness_refused")) == 1
