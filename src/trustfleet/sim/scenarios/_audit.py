"""The demo's audit stage: the story in the tamper-evident log, cosigned, proved, an edit found.

The story's security events are entries of the log; the newest checkpoint that holds the
revocation carries the witness's cosignature (verified with the witness's key); the
revocation's inclusion proof verifies with the independent Go verifier (skipped, with a line
saying why, only where Go or its sources are absent); the whole log verifies against the store;
and on a COPY of the store (the demo's own home is never touched) an attacker's edit of the
revocation row, triggers dropped, is named by ``audit verify``.
"""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

from trustfleet.audit.checkpoint import Checkpoint, parse_checkpoint
from trustfleet.audit.note import NoteError, Verifier, parse_note, parse_verifier_key, verify_note
from trustfleet.audit.proof_file import TlogProof
from trustfleet.errors import InvalidInput, NotFound, Unavailable
from trustfleet.services.audit import current_note, list_entries, prove_entry
from trustfleet.services.audit_offline import run_verify
from trustfleet.services.audit_verify import AuditReport
from trustfleet.services.home import AUDIT_VKEY_FILE
from trustfleet.services.runtime import Runtime
from trustfleet.settings import ServerSettings, load_server_settings
from trustfleet.sim.fleet import SimFleet
from trustfleet.sim.process import wait_until
from trustfleet.sim.scenarios._result import Observed, one_line, stage
from trustfleet.sim.tlogverify import find_tlogverify, run_tlogverify

__all__ = ["audit"]

STORY = (
    "device.registered",
    "release.published",
    "device.enrolled",
    "device.quarantined",
    "device.released",
    "device.revoked",
)
"""Kinds of the story's security events the log must hold."""
COSIGNED_TIMEOUT_S = 30.0
_ATTACKER = "operator:mallory@demo"
_TRIGGERS = ("security_events_no_update", "security_events_no_delete")
_SQLITE = "sqlite:///"


@stage("audit")
def audit(fleet: SimFleet) -> Observed:
    """The story is in the log, cosigned by a witness, provable to Go, and an edit is found."""
    rt, work = fleet.srv.runtime, fleet.workdir / "audit"
    work.mkdir(exist_ok=True)
    log_vkey = (fleet.srv.home / AUDIT_VKEY_FILE).read_text(encoding="ascii").strip()
    if fleet.witness is None:
        raise NotFound("the fleet has no witness", hint="SimFleet.add_witness() when it is made")
    log, witness = parse_verifier_key(log_vkey), parse_verifier_key(fleet.witness.vkey)
    story = {kind: _first_id(rt, kind) for kind in STORY}
    revocation = _first_id(rt, "device.revoked", device=fleet.device("revoked"))
    events = _wait_cosigned(rt, at_least=revocation, witness=witness)
    proof = prove_entry(rt, revocation)
    checkpoint = parse_checkpoint(parse_note(proof.note).text)
    signers = [v.name for v in _valid_signers(proof.note, [log, witness])]
    go = _go_inclusion(work, proof, log_vkey=log_vkey, witness_vkey=fleet.witness.vkey)
    whole = run_verify(home=fleet.srv.home, key=None)
    edited = _edited_copy_report(fleet.srv.home, work / "tampered", entry_id=revocation)
    named = [f.entries for f in edited.findings]
    in_tree = all(0 < entry <= checkpoint.size for entry in story.values())
    return Observed(
        {
            f"all {events} events so far, the story's among them, are in the log": in_tree
            and checkpoint.size >= events,
            "the checkpoint is signed by the log and cosigned by the witness": signers
            == [log.name, witness.name],
            "the Go verifier accepts the revocation's proof": go.get("ok") is not False,
            "the whole log verifies against the store": whole.ok,
            "audit verify names the edited row of a copy": named == [(revocation,)],
        },
        {"entries": events}
        | _details(checkpoint, witness, proof=proof, go=go, whole=whole, edited=edited)
        | {"revocation_entry": revocation, "story": story},
    )


def _first_id(rt: Runtime, kind: str, *, device: str | None = None) -> int:
    """The id of the first entry of ``kind`` (about ``device``), 0 if there is none."""
    page = list_entries(rt, kind=kind, device=device, limit=1)
    return page.items[0].id if page.items else 0


def _wait_cosigned(rt: Runtime, *, at_least: int, witness: Verifier) -> int:
    """Wait until a checkpoint the witness cosigned holds every event so far (and entry
    ``at_least``); how many events there were.

    Raises:
        Unavailable: Not within ``COSIGNED_TIMEOUT_S``.
    """
    with rt.uow.begin(read_only=True) as tx:
        events = tx.events.last_id()  # ids are dense: one entry per event
    wait_until(
        lambda: _cosigned(rt, covering=max(events, at_least), witness=witness),
        timeout_s=COSIGNED_TIMEOUT_S,
        what="a checkpoint holding the story, cosigned by the witness",
    )
    return events


def _cosigned(rt: Runtime, *, covering: int, witness: Verifier) -> bool:
    """Whether the newest checkpoint holds entry ``covering`` and the witness cosigned it."""
    try:
        parsed = parse_note(current_note(rt))
        if parse_checkpoint(parsed.text).size < covering:
            return False
        verify_note(parsed, verifiers=[witness])
    except (NoteError, NotFound):
        return False
    return True


def _valid_signers(note: bytes, verifiers: list[Verifier]) -> list[Verifier]:
    """Those of ``verifiers`` whose signature on ``note`` is present and valid, in order."""
    parsed = parse_note(note)
    valid = []
    for verifier in verifiers:
        try:
            valid += verify_note(parsed, verifiers=[verifier])
        except NoteError:
            continue
    return valid


def _go_inclusion(
    work: Path, proof: TlogProof, *, log_vkey: str, witness_vkey: str
) -> dict[str, Any]:
    """The revocation's proof and the cosigned note, checked by the independent Go verifier."""
    try:
        binary = find_tlogverify()
    except Unavailable as exc:
        return {"skipped": f"Go verifier skipped: {one_line(exc)}"}
    note, entry, hashes = work / "checkpoint.note", work / "entry.json", work / "proof.hashes"
    note.write_bytes(proof.note)
    entry.write_bytes(proof.extra or b"")
    hashes.write_text("".join(base64.b64encode(h).decode() + "\n" for h in proof.hashes))
    signed = ("--vkey", log_vkey, "--note", note)
    included = run_tlogverify(
        binary,
        "inclusion",
        *signed,
        "--index",
        str(proof.index),
        "--entry",
        entry,
        "--proof",
        hashes,
    )
    cosigned = run_tlogverify(binary, "note", *signed, "--witness", witness_vkey)
    failed = [r.stderr.strip() for r in (included, cosigned) if r.returncode != 0]
    if failed:
        return {"ok": False, "error": failed[0]}
    witnesses = json.loads(cosigned.stdout).get("witnesses") or []
    return {
        "ok": True,
        "leaf_hash": json.loads(included.stdout)["leaf_hash"],
        "cosigned_by": [w.get("name") for w in witnesses],
    }


def _edited_copy_report(home: Path, copy: Path, *, entry_id: int) -> AuditReport:
    """``audit verify`` of a copy of the home whose entry ``entry_id`` an attacker edited."""
    settings = load_server_settings(home)
    _copy_home(settings, copy)
    with sqlite3.connect(_sqlite_path(load_server_settings(copy))) as conn:
        for trigger in _TRIGGERS:
            conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        conn.execute("UPDATE security_events SET actor = ? WHERE id = ?", (_ATTACKER, entry_id))
    return run_verify(home=copy, key=None)


def _copy_home(settings: ServerSettings, copy: Path) -> None:
    """What ``audit verify --home`` reads: settings, public keys, the published log, the store.

    The published checkpoint is copied before its tiles and the store last, so the copy is a
    consistent prefix even while the sequencer runs; the store through SQLite's backup API.
    """
    home = settings.home
    published = settings.path(settings.audit.publish_dir)
    target = copy / published.relative_to(home)
    target.mkdir(parents=True)
    shutil.copy2(home / "trustfleet.toml", copy / "trustfleet.toml")
    shutil.copytree(home / "public", copy / "public")
    shutil.copy2(published / "checkpoint", target / "checkpoint")
    shutil.copytree(published / "tile", target / "tile")
    database = _sqlite_path(load_server_settings(copy))
    database.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(_sqlite_path(settings)) as src, sqlite3.connect(database) as dst:
        src.backup(dst)


def _sqlite_path(settings: ServerSettings) -> Path:
    url = settings.store_url()
    if not url.startswith(_SQLITE):
        raise InvalidInput("the tampering check copies a SQLite store; this home's is not one")
    return Path(url[len(_SQLITE) :])


def _details(
    checkpoint: Checkpoint,
    witness: Verifier,
    *,
    proof: TlogProof,
    go: dict[str, Any],
    whole: AuditReport,
    edited: AuditReport,
) -> dict[str, Any]:
    return {
        "checkpoint_size": checkpoint.size,
        "cosigned_by": witness.name,
        "proof_hashes": len(proof.hashes),
        "go_verifier": go.get("skipped") or ("verified" if go.get("ok") else go.get("error")),
        "whole_log": "verifies" if whole.ok else [f.message for f in whole.findings],
        "tampered_copy": [f.message for f in edited.findings],
        "root": base64.b64encode(checkpoint.root).decode(),
        "leaf_hash": go.get("leaf_hash"),
    }
