"""``/audit``: the tamper-evident audit log's checkpoint and inclusion proofs (docs/audit.md)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from trustfleet.audit.checkpoint import parse_checkpoint
from trustfleet.audit.note import parse_note
from trustfleet.server.api._auth import CallerDep, guarded
from trustfleet.server.api.schemas import CheckpointOut, ProofOut
from trustfleet.services.audit import current_note, prove_entry

__all__ = ["router"]

router = APIRouter(tags=["audit"])
_MAX_ENTRY = 2**62


@router.get("/audit/checkpoint", response_model=CheckpointOut, **guarded("audit.read"))
async def get_checkpoint(caller: CallerDep) -> Any:
    """The latest signed checkpoint (a C2SP signed note with witness cosignatures)."""
    note = await caller.run(current_note, caller.rt)
    size = parse_checkpoint(parse_note(note).text).size
    return CheckpointOut(size=size, note=note.decode("utf-8"))


@router.get("/audit/entries/{entry_id}/proof", response_model=ProofOut, **guarded("audit.read"))
async def get_proof(caller: CallerDep, entry_id: Annotated[int, Path(ge=1, le=_MAX_ENTRY)]) -> Any:
    """An entry's inclusion proof in the latest checkpoint (C2SP tlog-proof, verifiable offline)."""
    proof = await caller.run(prove_entry, caller.rt, entry_id)
    return ProofOut(entry_id=entry_id, proof=proof.to_bytes().decode("utf-8"))
