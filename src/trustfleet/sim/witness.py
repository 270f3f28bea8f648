"""A witness for the harness: its own home, token and key, and its ``witness serve`` process.

:class:`SimWitness` makes a witness home with ``trustfleet witness init`` (a child process: the
witness's SoftHSM2 token must not share this process's token configuration, ADR 0002) for the
logs whose verifier keys it is given, and serves it with ``trustfleet witness serve`` as a
:class:`~trustfleet.sim.process.ManagedProcess` on a free loopback port, ready when the port
accepts connections. It is stopped by its process group, never by name.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trustfleet.errors import Unavailable
from trustfleet.sim.process import ManagedProcess, free_port, port_open
from trustfleet.sim.server import CLI_TIMEOUT_S, console_script

__all__ = ["SimWitness"]

_WITNESS_TLS = "public/witness-tls.pem"


class SimWitness:
    """A witness home and its ``trustfleet witness serve`` process.

    Args:
        home: The witness home (made by :meth:`create`).
        vkey: Its cosignature verifier key (as ``witness init`` printed it).
        log: Where the process writes (default: ``home/../witness.log``).
    """

    def __init__(self, home: Path, *, vkey: str, log: Path | None = None) -> None:
        self.home = home
        self.vkey = vkey
        self.log = log or home.parent / "witness.log"
        self.port = free_port()
        self.process: ManagedProcess | None = None

    @classmethod
    def create(
        cls, home: Path, *, name: str, logs: Sequence[str], log: Path | None = None
    ) -> SimWitness:
        """A new witness home for the logs of verifier keys ``logs`` (not started).

        Raises:
            Unavailable: ``trustfleet witness init`` failed (its last line says why).
        """
        argv = [str(console_script("trustfleet")), "witness", "init", "--home", str(home)]
        argv += ["--name", name, "--json"]
        for vkey in logs:
            argv += ["--log", vkey]
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False
        )
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise Unavailable(f"trustfleet witness init failed: {last}")
        made: dict[str, Any] = json.loads(done.stdout)
        return cls(home, vkey=str(made["vkey"]), log=log)

    def __repr__(self) -> str:
        return f"<SimWitness {self.home} {self.process!r}>"

    @property
    def url(self) -> str:
        """``https://localhost:PORT`` (its self-signed certificate names localhost)."""
        return f"https://localhost:{self.port}"

    @property
    def tls_cert(self) -> Path:
        """Its self-signed TLS certificate: what a log trusts to call it."""
        return self.home / _WITNESS_TLS

    @property
    def name(self) -> str:
        """Its name (the first field of its verifier key)."""
        return self.vkey.split("+", 1)[0]

    def server_entry(self) -> dict[str, str]:
        """This witness as one item of a server's ``[audit] witnesses``."""
        return {"url": self.url, "key": self.vkey, "ca": str(self.tls_cert)}

    @property
    def pid(self) -> int:
        """The ``witness serve`` process's pid (it leads its own process group)."""
        if self.process is None:
            raise Unavailable("the witness was not started")
        return self.process.pid

    def start(self) -> SimWitness:
        """Start ``trustfleet witness serve`` and wait until its port accepts connections.

        Raises:
            Unavailable: It exited, or did not listen in time.
        """
        argv: list[str | Path] = [console_script("trustfleet"), "witness", "serve"]
        argv += ["--home", self.home]
        argv += ["--port", str(self.port)]
        port = self.port
        self.process = ManagedProcess(
            argv, log=self.log, ready=lambda: port_open(port), name="witness"
        )
        self.process.start()
        return self

    def stop(self) -> None:
        """Stop the witness's process group (if it was started)."""
        if self.process is not None:
            self.process.stop()
