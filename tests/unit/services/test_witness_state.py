"""The witness service's files, with an in-memory key: state written before the answer, alerts
appended, a corrupt or misplaced state file refused (the witness must not forget a log)."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from support.softkeys import SoftEd25519Key
from trustfleet.audit import (
    COSIGNATURE_V1,
    ED25519,
    Checkpoint,
    format_note,
    leaf_hash,
    root_of,
    sign_note,
    verifier_key,
)
from trustfleet.audit.witness import format_add_checkpoint
from trustfleet.errors import Config, InvalidInput
from trustfleet.services.witness import (
    ALERTS_FILE,
    SIZE_CONTENT_TYPE,
    Witness,
    log_verifiers,
    origin_hash,
    witness_alerts,
    witness_status,
)
from trustfleet.settings.witness import WitnessHomeSettings, save_witness_settings

ORIGIN = "log.example/audit"
LOG_KEY = SoftEd25519Key(1)
NOW = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)
LEAVES = [leaf_hash(b"%d" % i) for i in range(10)]


class _Signer(SoftEd25519Key):
    closed = False

    def close(self) -> None:
        self.closed = True


def _vkey() -> str:
    return verifier_key(ORIGIN, ED25519, LOG_KEY.public_bytes_raw())


@pytest.fixture
def settings(tmp_path: Path) -> WitnessHomeSettings:
    tmp_path.chmod(0o755)
    (tmp_path / "state").mkdir(mode=0o700)
    made = WitnessHomeSettings(home=tmp_path, name="witness.example/w1", logs=[_vkey()])
    save_witness_settings(made)
    return made


def _open(settings: WitnessHomeSettings) -> Witness:
    return Witness(settings, signer=_Signer(9), logs=log_verifiers(settings.logs))


def _body(old: int, size: int, *, root: bytes | None = None) -> bytes:
    checkpoint = Checkpoint(ORIGIN, size, root_of(LEAVES[:size]) if root is None else root)
    note = format_note(sign_note(checkpoint.text(), name=ORIGIN, signer=LOG_KEY))
    return format_add_checkpoint(old_size=old, proof=[], note=note)


def test_a_cosigned_checkpoint_is_kept_privately_and_survives_reopening(
    settings: WitnessHomeSettings,
) -> None:
    reply = _open(settings).add_checkpoint(_body(0, 4), now=NOW)
    assert reply.status == 200
    path = settings.home / "state" / f"{origin_hash(ORIGIN)}.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    [row] = witness_status(settings.home)
    assert (row["origin"], row["size"], row["cosigned_at"]) == (ORIGIN, 4, "2026-12-02T15:00:00Z")
    again = _open(settings).add_checkpoint(_body(0, 6), now=NOW)
    assert (again.status, again.body, again.content_type) == (409, b"4\n", SIZE_CONTENT_TYPE)


def test_a_split_view_is_appended_to_the_alerts(settings: WitnessHomeSettings) -> None:
    witness = _open(settings)
    witness.add_checkpoint(_body(0, 4), now=NOW)
    reply = witness.add_checkpoint(_body(4, 4, root=root_of(LEAVES[:5])), now=NOW)
    assert reply.status == 422
    [alert] = witness_alerts(settings.home)
    assert alert["outcome"] == "split_view"
    assert alert["time"] == "2026-12-02T15:00:00Z"
    assert alert["cosigned"] != alert["submitted"]
    assert stat.S_IMODE((settings.home / ALERTS_FILE).stat().st_mode) == 0o600
    assert witness_status(settings.home)[0]["size"] == 4  # not advanced


@pytest.mark.parametrize(
    ("content", "name"),
    [
        ("{not json", None),
        (json.dumps({"note": "no note", "cosigned_at_s": 1}), None),
        (None, "0" * 64),
    ],
    ids=["not-json", "not-a-note", "another-logs-file"],
)
def test_a_corrupt_or_misplaced_state_file_stops_the_witness(
    settings: WitnessHomeSettings, content: str | None, name: str | None
) -> None:
    _open(settings).add_checkpoint(_body(0, 4), now=NOW)
    path = settings.home / "state" / f"{origin_hash(ORIGIN)}.json"
    if content is not None:
        path.write_text(content)
    if name is not None:
        path.rename(path.with_name(f"{name}.json"))
    with pytest.raises(Config, match="witness state"):
        _open(settings)


def test_a_log_key_must_be_an_ed25519_note_key() -> None:
    cosigner = verifier_key("w.example", COSIGNATURE_V1, LOG_KEY.public_bytes_raw())
    with pytest.raises(InvalidInput, match="not an Ed25519 note key"):
        log_verifiers([cosigner])
    with pytest.raises(InvalidInput, match="at least one log key"):
        log_verifiers([])
