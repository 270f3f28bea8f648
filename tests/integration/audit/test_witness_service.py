"""A real witness: ``trustfleet witness init`` (SoftHSM2 token, Ed25519 key), ``witness serve``
over HTTPS in its own session, and a log made here with audit.tiles and an Ed25519 key asking it
for cosignatures through ``request_cosignature``."""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from support.httpsprobe import raw_exchange, tls_context
from support.server import run_cli
from support.softkeys import SoftEd25519Key
from support.waiting import wait_for
from support.witnesses import TIMEOUT_S, Witness, running_witness
from trustfleet.audit import (
    ED25519,
    Checkpoint,
    cosignature_time,
    format_note,
    leaf_hash,
    parse_note,
    parse_verifier_key,
    sign_note,
    verifier_key,
    verify_note,
    with_signatures,
)
from trustfleet.audit.tiles import append_leaves, consistency_proof
from trustfleet.services.witness_client import WitnessRefusal
from trustfleet.sim.process import free_port, port_open

pytestmark = pytest.mark.integration

ORIGIN = "log.example/audit"
WITNESS = "witness.example/w1"


LOG_KEY = SoftEd25519Key(7)


@dataclass
class Log:
    """A log in memory: its tiles and its Ed25519 key."""

    tiles: dict[tuple[int, int], bytes] = field(default_factory=dict)
    size: int = 0

    def append(self, count: int, *, salt: bytes = b"") -> Checkpoint:
        leaves = [leaf_hash(b"event %d%s" % (self.size + i, salt)) for i in range(count)]
        update = append_leaves(size=self.size, read_tile=self._read, leaf_hashes=leaves)
        self.tiles.update(update.tiles)
        self.size = update.size
        return Checkpoint(ORIGIN, update.size, update.root)

    def proof(self, old_size: int) -> list[bytes]:
        if old_size == 0:
            return []
        return consistency_proof(old_size=old_size, new_size=self.size, read_tile=self._read)

    def _read(self, level: int, index: int) -> bytes:
        return self.tiles[(level, index)]


def signed(checkpoint: Checkpoint, *, key: SoftEd25519Key = LOG_KEY) -> bytes:
    return format_note(sign_note(checkpoint.text(), name=ORIGIN, signer=key))


@pytest.fixture
def witness(tmp_path: Path) -> Iterator[Witness]:
    log_vkey = verifier_key(ORIGIN, ED25519, LOG_KEY.public_bytes_raw())
    with running_witness(tmp_path / "witness", name=WITNESS, log_vkey=log_vkey) as running:
        yield running


def _cosigned(witness: Witness, note: bytes, answer: object) -> bytes:
    """The note with the witness's cosignature, verified with its vkey."""
    assert isinstance(answer, list), answer
    full = with_signatures(parse_note(note), answer)
    verifier = parse_verifier_key(witness.vkey)
    assert verify_note(full, verifiers=[verifier]) == [verifier]
    assert cosignature_time(answer[0]) > 0
    return format_note(full)


def test_checkpoints_are_cosigned_and_the_cosignatures_verify(witness: Witness) -> None:
    log = Log()
    first = log.append(3)
    _cosigned(witness, signed(first), witness.ask(signed(first), old_size=0))
    second = log.append(300)
    answer = witness.ask(signed(second), old_size=3, proof=log.proof(3))
    cosigned = _cosigned(witness, signed(second), answer)
    status = witness.cli_json("status")
    [row] = status["logs"]  # type: ignore[misc]  # a JSON list of one log
    assert (row["origin"], row["size"]) == (ORIGIN, 303)
    # The monitoring API serves what it cosigned, the log's signature and its own.
    hashed = hashlib.sha256(ORIGIN.encode()).hexdigest()
    context = ssl.create_default_context(cafile=str(witness.home / "public" / "witness-tls.pem"))
    with httpx.Client(verify=context, timeout=TIMEOUT_S) as client:
        served = client.get(f"{witness.url}/{hashed}/checkpoint")
        missing = client.get(f"{witness.url}/{'0' * 64}/checkpoint")
    assert served.status_code == 200
    assert parse_note(served.content).signatures == parse_note(cosigned).signatures
    assert missing.status_code == 404


def test_a_stale_old_size_is_409_with_the_size_the_witness_has(witness: Witness) -> None:
    log = Log()
    witness.ask(signed(log.append(5)), old_size=0)
    answer = witness.ask(signed(log.append(4)), old_size=0)
    assert isinstance(answer, WitnessRefusal)
    assert (answer.status, answer.size) == (409, 5)


def test_a_forged_log_signature_is_403(witness: Witness) -> None:
    log = Log()
    answer = witness.ask(signed(log.append(5), key=SoftEd25519Key(8)), old_size=0)
    assert isinstance(answer, WitnessRefusal)
    assert (answer.status, answer.reason) == (403, "no signature by a known key")
    assert witness.cli_json("status")["logs"] == []


def test_a_split_view_is_refused_and_alerted(witness: Witness) -> None:
    honest, forked = Log(), Log()
    seen = honest.append(8)
    witness.ask(signed(seen), old_size=0)
    other = forked.append(8, salt=b"-forked")
    answer = witness.ask(signed(other), old_size=8)
    assert isinstance(answer, WitnessRefusal)
    assert answer.status == 422
    assert "split view" in answer.reason
    [alert] = witness.cli_json("alerts")["alerts"]  # type: ignore[misc]  # a JSON list
    assert alert["origin"] == ORIGIN
    assert parse_note(alert["cosigned"].encode()).text == seen.text()
    assert parse_note(alert["submitted"].encode()).text == other.text()
    assert "split view" in alert["reason"]
    # A later checkpoint of the fork cannot be proven consistent either: alerted too.
    bigger = forked.append(4, salt=b"-forked")
    answer = witness.ask(signed(bigger), old_size=8, proof=forked.proof(8))
    assert isinstance(answer, WitnessRefusal)
    assert answer.status == 422
    assert len(witness.cli_json("alerts")["alerts"]) == 2  # type: ignore[arg-type]


def test_the_state_survives_a_restart(witness: Witness) -> None:
    log = Log()
    witness.ask(signed(log.append(6)), old_size=0)
    witness.restart()
    grown = log.append(2)
    stale = witness.ask(signed(grown), old_size=0)
    assert isinstance(stale, WitnessRefusal)
    assert (stale.status, stale.size) == (409, 6)
    answer = witness.ask(signed(grown), old_size=6, proof=log.proof(6))
    _cosigned(witness, signed(grown), answer)


def test_one_witness_process_per_home(witness: Witness) -> None:
    second = run_cli("witness", "serve", "--home", witness.home, "--port", str(free_port()))
    assert second.returncode != 0
    assert "in use by pid" in second.stderr
    wait_for(lambda: port_open(witness.port), what="the first witness still serving")


def test_an_oversized_request_is_413(witness: Witness) -> None:
    head = b"POST /add-checkpoint HTTP/1.1\r\nhost: localhost\r\ncontent-length: 100000\r\n\r\n"
    answer = raw_exchange(
        tls_context(witness.home / "public" / "witness-tls.pem"), witness.port, head
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer[:100]
