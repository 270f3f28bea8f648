"""The audit log end to end in one server home: events into the tree, checkpoints signed in the
token, the published tlog-tiles, proofs, and the tamper table of issue 11.

Every row of the tamper table changes a copy of one home (its store, its published folder) as
an attacker on the server would, then runs ``trustfleet audit verify`` (in-process, through the
CLI) and checks the report names what changed; where the change is visible to an outside
client, the independent Go verifier (tests/peers/tlogverify) must refuse it too.
"""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from support.runtimes import opened_home
from support.tlogverify import verify_fails, verify_ok
from trustfleet.audit.checkpoint import Checkpoint, parse_checkpoint
from trustfleet.audit.note import format_note, parse_note, sign_note
from trustfleet.cli.main import main
from trustfleet.services.audit import current_note, integrate, on_each, prove_entry, publish_dir
from trustfleet.services.runtime import Runtime
from trustfleet.settings import load_server_settings

ADDED = 600  # with the home's own events: past two full tiles of level 0, and a level-1 tile
T0 = datetime.now(UTC).replace(microsecond=0)
EVENTS = 0  # set by base_home: every event of the home


def _append(rt: Runtime, count: int, *, start: int = 0) -> None:
    with rt.uow.begin() as tx:
        for i in range(start, start + count):
            tx.events.append(
                type="device.registered" if i % 3 else "certificate.revoked",
                actor=f"operator:tester{i % 4}@host",
                subject=f"device:d{i % 50}",
                details={"n": i, "why": "test", "ratio": i / 7},
                now=T0 + timedelta(milliseconds=i),
            )


@pytest.fixture(scope="module")
def base_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A home with its own events and ADDED more, integrated in three checkpoints, published."""
    home = tmp_path_factory.mktemp("audit") / "home"
    with opened_home(home, organization="Audit Test", now=T0) as rt:
        _append(rt, 100)
        assert on_each(rt, now=lambda: T0) is not None
        _append(rt, 300, start=100)
        assert on_each(rt, now=lambda: T0) is not None
        _append(rt, ADDED - 400, start=400)
        done = on_each(rt, now=lambda: T0)
        assert done is not None
        global EVENTS  # noqa: PLW0603  # the home's size, known once it is made
        EVENTS = done.checkpoint.size
        assert EVENTS >= ADDED
    yield home


@dataclass
class Case:
    """A copy of the base home, opened."""

    home: Path
    rt: Runtime

    @property
    def db(self) -> Path:
        return self.home / "db" / "trustfleet.sqlite3"

    @property
    def vkey(self) -> str:
        return (self.home / "public" / "audit-log.vkey").read_text().strip()

    def sql(self, statement: str, params: tuple[object, ...] = ()) -> None:
        """Run SQL on the store directly, as an attacker with the database file would."""
        with sqlite3.connect(self.db) as conn:
            conn.execute(statement, params)

    def drop_triggers(self) -> None:
        self.sql("DROP TRIGGER security_events_no_update")
        self.sql("DROP TRIGGER security_events_no_delete")


@pytest.fixture
def case(base_home: Path, tmp_path: Path) -> Iterator[Case]:
    home = tmp_path / "home"
    shutil.copytree(base_home, home, symlinks=True)
    rt = Runtime.open(load_server_settings(home))
    try:
        yield Case(home=home, rt=rt)
    finally:
        rt.close()


def _verify(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = main(["audit", "verify", "--json", *map(str, args)])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else {}


def _kinds(report: dict[str, Any]) -> list[str]:
    return [f["kind"] for f in report["findings"]]


def test_every_event_is_in_the_log_and_the_store_verifies(
    case: Case, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = _verify(capsys, "--home", case.home)
    assert code == 0 and report["ok"], report
    assert report["checkpoint"]["size"] == EVENTS  # 0 entries lost
    assert any(f"all {EVENTS} logged events" in line for line in report["checks"])
    assert any("published copy" in line for line in report["checks"])


def test_an_edited_entry_is_named(case: Case, capsys: pytest.CaptureFixture[str]) -> None:
    case.drop_triggers()
    case.sql("UPDATE security_events SET actor = 'operator:mallory@host' WHERE id = 17")
    code, report = _verify(capsys, "--home", case.home)
    assert code != 0 and _kinds(report) == ["edited"]
    assert report["findings"][0]["entries"] == [17]
    assert "entries edited in the database: 17" in report["findings"][0]["message"]


def test_a_deleted_entry_is_named(case: Case, capsys: pytest.CaptureFixture[str]) -> None:
    case.drop_triggers()
    case.sql("DELETE FROM security_events WHERE id = 250")
    code, report = _verify(capsys, "--home", case.home)
    assert code != 0 and _kinds(report) == ["missing"]
    assert report["findings"][0]["entries"] == [250]


def test_two_swapped_entries_are_named(case: Case, capsys: pytest.CaptureFixture[str]) -> None:
    case.drop_triggers()
    columns = ("occurred_at", "type", "actor", "subject", "details", "origin", "outcome")
    with sqlite3.connect(case.db) as conn:
        rows = {
            r[0]: r[1:] for r in conn.execute("SELECT * FROM security_events WHERE id IN (5, 6)")
        }
        assignments = ", ".join(f"{c} = ?" for c in columns)
        for target, source in ((5, 6), (6, 5)):
            conn.execute(
                f"UPDATE security_events SET {assignments} WHERE id = ?",  # noqa: S608  # constants
                (*rows[source], target),
            )
    code, report = _verify(capsys, "--home", case.home)
    assert code != 0 and _kinds(report) == ["swapped"]
    assert report["findings"][0]["message"] == "entries 5 and 6 swapped"


def test_a_truncated_log_is_named(case: Case, capsys: pytest.CaptureFixture[str]) -> None:
    case.drop_triggers()
    case.sql("DELETE FROM security_events WHERE id > ?", (EVENTS - 30,))
    code, report = _verify(capsys, "--home", case.home)
    assert code != 0 and _kinds(report) == ["truncated"]
    assert (
        f"covers {EVENTS} entries, the database stops at entry {EVENTS - 30}"
        in (report["findings"][0]["message"])
    )


def test_triggers_dropped_and_all_rows_rewritten(
    case: Case, capsys: pytest.CaptureFixture[str]
) -> None:
    case.drop_triggers()
    case.sql("UPDATE security_events SET subject = 'device:nobody'")
    code, report = _verify(capsys, "--home", case.home)
    assert code != 0 and "edited" in _kinds(report)
    edited = next(f for f in report["findings"] if f["kind"] == "edited")
    assert len(edited["entries"]) == EVENTS


def test_a_forged_checkpoint_is_refused_here_and_by_the_go_verifier(
    case: Case, capsys: pytest.CaptureFixture[str], tlogverify: Path
) -> None:
    log = publish_dir(case.rt)
    real = parse_checkpoint(parse_note((log / "checkpoint").read_bytes()).text)
    other = Ed25519PrivateKey.generate()

    class Forger:
        def public_bytes_raw(self) -> bytes:
            return other.public_key().public_bytes_raw()

        def sign(self, message: bytes) -> bytes:
            return other.sign(message)

    forged = Checkpoint(origin=real.origin, size=real.size + 1, root=b"\x07" * 32)
    (log / "checkpoint").write_bytes(
        format_note(sign_note(forged.text(), name=real.origin, signer=Forger()))
    )
    code, report = _verify(capsys, "--key", case.vkey, "--tiles", log)
    assert code != 0 and _kinds(report) == ["signature"]
    assert "not a valid checkpoint signed by" in report["findings"][0]["message"]
    verify_fails(tlogverify, "tiles", "--vkey", case.vkey, "--base", log)


def test_an_altered_tile_file_is_named_here_and_refused_by_the_go_verifier(
    case: Case, capsys: pytest.CaptureFixture[str], tlogverify: Path
) -> None:
    log = publish_dir(case.rt)
    verify_ok(tlogverify, "tiles", "--vkey", case.vkey, "--base", log)  # intact first
    tile = log / "tile" / "0" / "001"
    data = bytearray(tile.read_bytes())
    data[40] ^= 0x01
    tile.write_bytes(bytes(data))
    code, report = _verify(capsys, "--key", case.vkey, "--tiles", log)
    assert code != 0 and _kinds(report) == ["tiles"]
    assert "tile/0/001" in report["findings"][0]["message"]
    code, report = _verify(capsys, "--home", case.home)
    assert code != 0 and any("published copy" in f["message"] for f in report["findings"])
    verify_fails(tlogverify, "tiles", "--vkey", case.vkey, "--base", log)


def test_an_altered_entry_bundle_is_named(case: Case, capsys: pytest.CaptureFixture[str]) -> None:
    log = publish_dir(case.rt)
    bundle = log / "tile" / "entries" / "000"
    bundle.write_bytes(bundle.read_bytes().replace(b"operator:tester1", b"operator:tester9", 1))
    code, report = _verify(capsys, "--key", case.vkey, "--tiles", log)
    assert code != 0 and _kinds(report) == ["edited"]


def test_a_rolled_back_log_is_refused_to_a_client_that_saw_more(
    case: Case, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    log = publish_dir(case.rt)
    old_copy = tmp_path / "old-log"
    shutil.copytree(log, old_copy)  # what the log published at EVENTS
    _append(case.rt, 10, start=EVENTS)
    on_each(case.rt, now=lambda: T0)
    seen = tmp_path / "seen.checkpoint"
    seen.write_bytes(current_note(case.rt))  # the client saw EVENTS + 10
    code, report = _verify(capsys, "--key", case.vkey, "--tiles", log, "--old", seen)
    assert code == 0, report  # the current log extends what the client saw
    code, report = _verify(capsys, "--key", case.vkey, "--tiles", old_copy, "--old", seen)
    assert code != 0 and _kinds(report) == ["rollback"]
    assert (
        f"size {EVENTS + 10} was seen, now the log shows size {EVENTS}"
        in (report["findings"][0]["message"])
    )


def test_a_split_view_is_refused(
    case: Case, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The log key itself is used (a compromised server): two trees, one size, two roots."""
    real = parse_checkpoint(parse_note(current_note(case.rt)).text)
    fork = Checkpoint(origin=real.origin, size=real.size, root=b"\x42" * 32)
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(current_note(case.rt))
    b.write_bytes(format_note(sign_note(fork.text(), name=real.origin, signer=case.rt.audit_key())))
    code, report = _verify(capsys, "--key", case.vkey, "--checkpoint", b)
    assert code == 0  # each alone verifies: only comparing shows the split
    code, report = _verify(capsys, "--key", case.vkey, "--checkpoint", b, "--old", a)
    assert code != 0 and _kinds(report) == ["split_view"]


def test_a_gap_stops_integration_instead_of_shifting_the_tree(case: Case) -> None:
    _append(case.rt, 3, start=EVENTS)
    case.drop_triggers()
    case.sql("DELETE FROM security_events WHERE id = ?", (EVENTS + 2,))
    with pytest.raises(Exception, match=f"security event {EVENTS + 2} is missing"):
        integrate(case.rt, now=T0)


def test_an_inclusion_proof_verifies_offline_and_with_the_go_verifier(
    case: Case, capsys: pytest.CaptureFixture[str], tmp_path: Path, tlogverify: Path
) -> None:
    proof_file = tmp_path / "e.tlog-proof"
    assert main(["audit", "prove", "--home", str(case.home), "321", "--out", str(proof_file)]) == 0
    code, report = _verify(capsys, "--key", case.vkey, "--proof", proof_file)
    assert code == 0 and any("entry 321 " in line for line in report["checks"])
    proof = prove_entry(case.rt, 321)
    note, entry, hashes = tmp_path / "cp", tmp_path / "entry", tmp_path / "hashes"
    note.write_bytes(proof.note)
    entry.write_bytes(proof.extra or b"")
    hashes.write_text("".join(base64.b64encode(h).decode() + "\n" for h in proof.hashes))
    verify_ok(tlogverify, "inclusion", "--vkey", case.vkey, "--note", note, "--index", "320",
              "--entry", entry, "--proof", hashes)  # fmt: skip
    entry.write_bytes((proof.extra or b"").replace(b'"why":"test"', b'"why":"tost"'))
    verify_fails(tlogverify, "inclusion", "--vkey", case.vkey, "--note", note, "--index", "320",
                 "--entry", entry, "--proof", hashes)  # fmt: skip


def test_operator_actions_name_the_operator_where_and_the_outcome(
    case: Case, capsys: pytest.CaptureFixture[str]
) -> None:
    from trustfleet.cli._common import ACTOR

    code = main(["device", "revoke", "dev-nosuchdevice", "--reason", "keyCompromise",
                 "--home", str(case.home)])  # fmt: skip
    assert code != 0
    capsys.readouterr()
    assert main(["audit", "log", "--home", str(case.home), "--kind", "operator.refused",
                 "--json"]) == 0  # fmt: skip
    entries = json.loads(capsys.readouterr().out)["entries"]
    assert len(entries) == 1
    refused = entries[0]
    assert refused["actor"] == ACTOR and ACTOR.startswith("operator:") and "@" in ACTOR
    assert refused["outcome"] == "refused" and refused["subject"] == "command:device revoke"
    assert refused["origin"].startswith("cli host=") and " pid=" in refused["origin"]
    assert "dev-nosuchdevice" in refused["details"]["error"]
