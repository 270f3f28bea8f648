"""A real witness for the tests: ``trustfleet witness init`` and ``witness serve`` (HTTPS, its own
session), asked through the log side's client (:func:`request_cosignature`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from support.server import TRUSTFLEET, run_cli
from trustfleet.audit import NoteSignature
from trustfleet.services.witness_client import WitnessRefusal, request_cosignature
from trustfleet.sim.process import ManagedProcess, free_port, port_open

__all__ = ["TIMEOUT_S", "Witness", "running_witness"]

TIMEOUT_S = 30.0


@dataclass
class Witness:
    home: Path
    port: int
    vkey: str
    process: ManagedProcess

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    def ask(self, note: bytes, *, old_size: int, proof: list[bytes] | None = None) -> (
        list[NoteSignature] | WitnessRefusal
    ):  # fmt: skip
        return request_cosignature(
            self.url,
            old_size=old_size,
            proof=proof or [],
            note=note,
            timeout_s=TIMEOUT_S,
            ca_file=self.home / "public" / "witness-tls.pem",
        )

    def cli_json(self, *args: str) -> dict[str, object]:
        result = run_cli("witness", *args, "--home", self.home, "--json")
        assert result.returncode == 0, result.stderr
        document: dict[str, object] = json.loads(result.stdout)
        return document

    def restart(self) -> None:
        assert self.process.stop() == 0  # SIGTERM: a clean stop
        self.process = serve(self.home, self.port)


def serve(home: Path, port: int) -> ManagedProcess:
    process = ManagedProcess(
        [TRUSTFLEET, "witness", "serve", "--home", home, "--port", str(port)],
        log=home.parent / "witness.log",
        ready=lambda: port_open(port),
        name="trustfleet witness serve",
    )
    return process.start(timeout_s=TIMEOUT_S)


@contextmanager
def running_witness(home: Path, *, name: str, log_vkey: str) -> Iterator[Witness]:
    """A witness made in ``home`` for the log ``log_vkey``, served on a free port until the end."""
    result = run_cli("witness", "init", "--home", home, "--name", name, "--log", log_vkey, "--json")
    assert result.returncode == 0, result.stderr
    vkey = str(json.loads(result.stdout)["vkey"])
    port = free_port()
    running = Witness(home=home, port=port, vkey=vkey, process=serve(home, port))
    try:
        yield running
    finally:
        running.process.stop()
