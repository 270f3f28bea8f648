"""What ``trustfleet audit verify`` checks, chosen by the files and options it is given.

Reads the keys (vkey text or files), checkpoints, proofs and entries from files (bounded), then
runs the checks of :mod:`trustfleet.services.audit_verify` on them, on a published copy, or on
the whole store of a home.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from trustfleet.audit.checkpoint import Checkpoint
from trustfleet.audit.note import Verifier, parse_verifier_key
from trustfleet.errors import InvalidInput
from trustfleet.fileio import read_bounded
from trustfleet.services.audit import tile_reader
from trustfleet.services.audit_source import MAX_FILE_BYTES, LogSource
from trustfleet.services.audit_verify import (
    AuditReport,
    check_checkpoint,
    check_consistency,
    check_proof,
    check_published,
    check_store,
    safe_reader,
)
from trustfleet.services.home import AUDIT_VKEY_FILE
from trustfleet.services.runtime import Runtime
from trustfleet.settings import load_server_settings

__all__ = ["run_verify"]


def _vkey_text(value: str) -> str:
    """A vkey given as text or as the path of a file holding it."""
    path = Path(value)
    if "+" not in value or path.is_file():
        try:
            return path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(
                f"{value!r} is neither a verifier key nor a readable key file",
                hint="a vkey looks like name+1234abcd+AQ…; or give the file holding one",
            ) from exc
    return value


def _read(path: Path, *, what: str) -> bytes:
    try:
        data = read_bounded(path, max_bytes=MAX_FILE_BYTES)
    except OSError as exc:
        raise InvalidInput(f"cannot read the {what} {path}: {exc.strerror or exc}") from None
    if data is None:
        raise InvalidInput(f"the {what} {path} is larger than {MAX_FILE_BYTES} bytes")
    return data


def run_verify(
    *,
    home: Path | None,
    key: str | None,
    checkpoint_file: Path | None = None,
    proof_file: Path | None = None,
    entry_file: Path | None = None,
    old_file: Path | None = None,
    tiles: str | None = None,
    ca_file: Path | None = None,
    witnesses: Sequence[str] = (),
    min_witnesses: int = 0,
) -> AuditReport:
    """What ``trustfleet audit verify`` checks, chosen by the files and options it is given.

    Raises:
        InvalidInput: Nothing to verify, no key, or a file that cannot be read.
    """
    if key is None:
        if home is None:
            raise InvalidInput(
                "no log key: give --key (the log's vkey) or --home",
                hint="'trustfleet audit key --home DIR' prints the key",
            )
        key = str(home / AUDIT_VKEY_FILE)
    log = parse_verifier_key(_vkey_text(key))
    wit = [parse_verifier_key(_vkey_text(w)) for w in witnesses]
    report = AuditReport()
    seen = _read(old_file, what="old checkpoint") if old_file else None
    if proof_file is not None:
        entry = _read(entry_file, what="entry") if entry_file else None
        check_proof(report, _read(proof_file, what="proof"), log=log, witnesses=wit,
                    min_witnesses=min_witnesses, entry=entry)  # fmt: skip
    if tiles is not None:
        check_published(report, LogSource(tiles, ca_file=ca_file), log=log, witnesses=wit,
                        min_witnesses=min_witnesses, seen=seen)  # fmt: skip
    elif checkpoint_file is not None:
        current = check_checkpoint(report, _read(checkpoint_file, what="checkpoint"), log=log,
                                   witnesses=wit, min_witnesses=min_witnesses)  # fmt: skip
        if seen is not None and current is not None:
            _consistency_offline(report, seen, current, log=log, home=home)
    elif proof_file is None and home is not None:
        with _home_runtime(home) as rt:
            check_store(report, rt, log=log, witnesses=wit, seen=seen)
    elif proof_file is None:
        raise InvalidInput(
            "nothing to verify",
            hint="give --home, --checkpoint, --proof or --tiles (see --help)",
        )
    return report


def _consistency_offline(
    report: AuditReport, seen: bytes, current: Checkpoint, *, log: Verifier, home: Path | None
) -> None:
    old = check_checkpoint(report, seen, log=log, what="checkpoint seen before")
    if old is None:
        return
    if home is None and current.size > old.size > 0:
        report.fail("proof", "a consistency proof needs the tiles: add --tiles DIR or --home")
        return
    if home is None:
        check_consistency(report, old, current, read_tile=None)
        return
    with _home_runtime(home) as rt, rt.uow.begin(read_only=True) as tx:
        check_consistency(report, old, current, read_tile=safe_reader(tile_reader(tx)))


@contextmanager
def _home_runtime(home: Path) -> Iterator[Runtime]:
    rt = Runtime.open(load_server_settings(home))
    try:
        yield rt
    finally:
        rt.close()
