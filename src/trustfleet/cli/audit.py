"""``trustfleet audit …``: the tamper-evident audit log (docs/audit.md).

``log`` lists entries; ``checkpoint`` shows (or makes) the signed tree head; ``prove`` writes an
offline inclusion proof; ``verify`` checks checkpoints, proofs, consistency, a published copy or
the whole store and names what changed; ``publish`` writes the tlog-tiles again; ``key`` prints
the log's verifier key for auditors.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from trustfleet.cli._common import (
    command_runtime,
    console,
    emit_json,
    now,
    present_page,
)
from trustfleet.cli._options import HomeOpt, JsonOpt, LimitOpt
from trustfleet.errors import InvalidInput, VerificationFailed, exit_code_for

__all__ = ["app"]

app = typer.Typer(
    help="The tamper-evident audit log: entries, checkpoints, proofs, verification.",
    no_args_is_help=True,
)

OptionalHome = Annotated[
    Path | None,
    typer.Option("--home", help="Server home (for its store and key).", envvar="TRUSTFLEET_HOME"),
]
KeyOpt = Annotated[
    str | None,
    typer.Option(
        "--key",
        help="The log's verifier key (vkey text or a file holding it; default: the home's "
        "public/audit-log.vkey).",
    ),
]
WitnessOpt = Annotated[
    list[str] | None,
    typer.Option("--witness", help="A witness's cosignature vkey (text or file); repeatable."),
]
MinWitnessOpt = Annotated[
    int, typer.Option("--min-witnesses", min=0, help="Cosignatures required on the checkpoint.")
]


def _time(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            f"{option} {value!r} is not an ISO 8601 time", hint="e.g. 2026-12-01T00:00:00+00:00"
        ) from None
    if parsed.tzinfo is None:
        raise InvalidInput(f"{option} {value!r} has no time zone", hint="add +00:00 or Z")
    return parsed


@app.command("log")
def log(
    home: HomeOpt,
    actor: Annotated[
        str | None, typer.Option("--actor", help="Only entries by this actor.")
    ] = None,
    device: Annotated[
        str | None, typer.Option("--device", help="Only entries about or by this device.")
    ] = None,
    kind: Annotated[
        str | None,
        typer.Option("--kind", help="Only entries of this type, e.g. certificate.revoked."),
    ] = None,
    since: Annotated[str | None, typer.Option("--since", help="From this time (ISO 8601).")] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Before this time (ISO 8601).")
    ] = None,
    limit: LimitOpt = 100,
    cursor: Annotated[
        str | None, typer.Option("--cursor", help="Show the page after a previous one.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """List the log's entries (security events and operator actions), oldest first."""
    from trustfleet.services.audit import list_entries

    with command_runtime(home) as rt:
        page = list_entries(
            rt, actor=actor, device=device, kind=kind, since=_time(since, "--since"),
            until=_time(until, "--until"), limit=limit, cursor=cursor,
        )  # fmt: skip
    rows = [
        {"id": e.id, "time": e.occurred_at.isoformat(), "type": e.type, "actor": e.actor,
         "origin": e.origin, "outcome": e.outcome, "subject": e.subject, "details": e.details}
        for e in page.items
    ]  # fmt: skip
    present_page(
        "entries", rows, next_cursor=page.next_cursor, json_out=json_out,
        table=Table("id", "time", "type", "actor", "subject", "outcome"),
        cells=lambda r: (str(r["id"]), r["time"], r["type"], r["actor"], r["subject"],
                         r["outcome"]),
    )  # fmt: skip


@app.command("checkpoint")
def checkpoint(
    home: HomeOpt,
    make: Annotated[
        bool, typer.Option("--now", help="Integrate pending entries and sign a checkpoint first.")
    ] = False,
    out: Annotated[
        Path | None, typer.Option("--out", help="Also write the note to this file.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Print the newest signed checkpoint (a C2SP signed note, with witness cosignatures)."""
    from trustfleet.audit.checkpoint import parse_checkpoint
    from trustfleet.audit.note import parse_note
    from trustfleet.fileio import write_atomic
    from trustfleet.services.audit import current_note, on_each
    from trustfleet.services.audit_witnesses import gather_cosignatures

    with command_runtime(home) as rt:
        if make:
            on_each(rt, now=now)
            gather_cosignatures(rt, now=now())
        note = current_note(rt)
    if out is not None:
        write_atomic(out, note)
    parsed = parse_note(note)
    cp = parse_checkpoint(parsed.text)
    if json_out:
        emit_json({
            "origin": cp.origin, "size": cp.size, "root": cp.root.hex(), "note": note.decode(),
            "signatures": [s.name for s in parsed.signatures],
        })  # fmt: skip
        return
    typer.echo(note.decode(), nl=False)


@app.command("prove")
def prove(
    home: HomeOpt,
    entry: Annotated[int, typer.Argument(min=1, help="The entry's id (the event id).")],
    size: Annotated[
        int | None, typer.Option("--size", min=1, help="Prove against this checkpoint size.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the .tlog-proof here (else: stdout).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Write an inclusion proof (C2SP tlog-proof, with the entry) that anyone can verify offline."""
    from trustfleet.fileio import write_atomic
    from trustfleet.services.audit import prove_entry

    with command_runtime(home) as rt:
        proof = prove_entry(rt, entry, size=size)
    data = proof.to_bytes()
    if out is not None:
        write_atomic(out, data)
    if json_out:
        emit_json({"entry": entry, "index": proof.index, "hashes": len(proof.hashes),
                   "proof": data.decode(), "file": str(out) if out else None})  # fmt: skip
    elif out is None:
        typer.echo(data.decode(), nl=False)
    else:
        console.print(f"[green]✓[/] inclusion proof of entry {entry} written to {out}")


@app.command("verify")
def verify(
    home: OptionalHome = None,
    key: KeyOpt = None,
    checkpoint_file: Annotated[
        Path | None, typer.Option("--checkpoint", help="A signed checkpoint to verify.")
    ] = None,
    proof_file: Annotated[
        Path | None, typer.Option("--proof", help="A .tlog-proof to verify.")
    ] = None,
    entry_file: Annotated[
        Path | None, typer.Option("--entry", help="The entry's bytes (if the proof lacks them).")
    ] = None,
    old_file: Annotated[
        Path | None,
        typer.Option("--old", help="A checkpoint seen before: the log must extend it."),
    ] = None,
    tiles: Annotated[
        str | None,
        typer.Option("--tiles", help="A published log to verify (a folder or an https:// URL)."),
    ] = None,
    ca_file: Annotated[
        Path | None, typer.Option("--ca", help="For an https:// --tiles: the CA bundle to trust.")
    ] = None,
    witness: WitnessOpt = None,
    min_witnesses: MinWitnessOpt = 0,
    json_out: JsonOpt = False,
) -> None:
    """Verify the log and name what changed; exit 0 only if everything verifies.

    With --home alone: the whole log against the store (every event, the tiles, the published
    copy). With files: a --checkpoint, a --proof, consistency from --old to --checkpoint (or
    to the published --tiles), or a published log (--tiles) — no home needed.
    """
    from trustfleet.services.audit_offline import run_verify

    report = run_verify(
        home=home, key=key, checkpoint_file=checkpoint_file, proof_file=proof_file,
        entry_file=entry_file, old_file=old_file, tiles=tiles, ca_file=ca_file,
        witnesses=witness or [], min_witnesses=min_witnesses,
    )  # fmt: skip
    if json_out:
        emit_json(report.to_json())
    else:
        for line in report.checks:
            console.print(f"[green]✓[/] {line}")
        for finding in report.findings:
            console.print(f"[red]✗ {finding.kind}[/]: {finding.message}")
    if not report.ok:
        raise typer.Exit(exit_code_for(VerificationFailed("audit log does not verify")))


@app.command("publish")
def publish_cmd(home: HomeOpt, json_out: JsonOpt = False) -> None:
    """Write the whole published log (tlog-tiles) again from the store (repairs a damaged copy)."""
    from trustfleet.services.audit import publish, publish_dir

    with command_runtime(home) as rt:
        size = publish(rt, from_size=0)
        where = publish_dir(rt)
    doc: dict[str, Any] = {"size": size, "dir": str(where)}
    if json_out:
        emit_json(doc)
    else:
        console.print(f"[green]✓[/] published {size} entries to {where}")


@app.command("key")
def key_cmd(home: HomeOpt, json_out: JsonOpt = False) -> None:
    """Print the log's verifier key (give it to auditors and witnesses)."""
    from trustfleet.services.audit import log_verifier_key

    with command_runtime(home) as rt:
        vkey = log_verifier_key(rt)
    if json_out:
        emit_json({"key": vkey, "origin": vkey.split("+", 1)[0]})
    else:
        typer.echo(vkey)
