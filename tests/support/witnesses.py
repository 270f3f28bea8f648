"""A real witness for the tests: the harness's :class:`~trustfleet.sim.witness.SimWitness`
(``trustfleet witness init``, ``witness serve`` over HTTPS in its own session), asked through the
log side's client (:func:`request_cosignature`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from support.server import run_cli
from trustfleet.audit import NoteSignature
from trustfleet.services.witness_client import WitnessRefusal, request_cosignature
from trustfleet.sim.process import ManagedProcess
from trustfleet.sim.witness import SimWitness

__all__ = ["TIMEOUT_S", "Witness", "running_witness"]

TIMEOUT_S = 30.0


@dataclass
class Witness:
    """A served witness (the harness's) and what the tests do with it."""

    sim: SimWitness

    @property
    def home(self) -> Path:
        return self.sim.home

    @property
    def port(self) -> int:
        return self.sim.port

    @property
    def vkey(self) -> str:
        return self.sim.vkey

    @property
    def url(self) -> str:
        return self.sim.url

    @property
    def process(self) -> ManagedProcess:
        assert self.sim.process is not None
        return self.sim.process

    def ask(self, note: bytes, *, old_size: int, proof: list[bytes] | None = None) -> (
        list[NoteSignature] | WitnessRefusal
    ):  # fmt: skip
        return request_cosignature(
            self.url, old_size=old_size, proof=proof or [], note=note, timeout_s=TIMEOUT_S,
            ca_file=self.sim.tls_cert,
        )  # fmt: skip

    def cli_json(self, *args: str) -> dict[str, object]:
        result = run_cli("witness", *args, "--home", self.home, "--json")
        assert result.returncode == 0, result.stderr
        document: dict[str, object] = json.loads(result.stdout)
        return document

    def restart(self) -> None:
        assert self.process.stop() == 0  # SIGTERM: a clean stop
        self.sim.start()  # the same port


@contextmanager
def running_witness(home: Path, *, name: str, log_vkey: str) -> Iterator[Witness]:
    """A witness made in ``home`` for the log ``log_vkey``, served on a free port until the end."""
    sim = SimWitness.create(home, name=name, logs=[log_vkey]).start()
    try:
        yield Witness(sim)
    finally:
        sim.stop()
