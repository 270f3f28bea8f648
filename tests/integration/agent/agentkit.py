"""Test helpers for the agent: the agent as a subprocess, an MQTT observer, a cut-able proxy.

The observer is ``mosquitto_sub`` with the fleet service's certificate: an MQTT client that
shares no code with the agent. The proxy is a plain TCP forwarder between the agent and the
broker; cutting it takes the agent offline while the broker and the observer stay up, so the
observer cannot miss what the agent delivers after it comes back.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from support.identities import mqtt_client_id_for_cert
from support.server import TRUSTFLEET
from trustfleet.sim.process import ManagedProcess, stop_group

WAIT_S = 30
"""Bound on every wait in these tests (never asserted as a duration)."""


class Observer:
    """``mosquitto_sub -V mqttv5`` as the service identity; collects ``(topic, payload)``."""

    def __init__(self, *, port: int, ca: Path, cert: Path, key: Path, topics: list[str]) -> None:
        args = ["stdbuf", "-oL", "mosquitto_sub", "-h", "localhost", "-p", str(port)]
        args += ["--cafile", str(ca), "--cert", str(cert), "--key", str(key)]
        args += ["--tls-version", "tlsv1.3", "-V", "mqttv5", "-q", "1", "-d"]
        args += ["-i", mqtt_client_id_for_cert(cert), "-F", "MSG %t %p"]
        for topic in topics:
            args += ["-t", topic]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )  # fmt: skip
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.raw: list[str] = []
        self._subscribed = threading.Event()
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        if not self._subscribed.wait(WAIT_S):
            self.close()
            raise AssertionError("observer not subscribed: " + "".join(self.raw))

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.raw.append(line)
            if "received SUBACK" in line:
                self._subscribed.set()
            if line.startswith("MSG "):
                _, topic, payload = line.rstrip("\n").split(" ", 2)
                with self._cond:
                    self.messages.append((topic, json.loads(payload)))
                    self._cond.notify_all()

    def wait_for(self, predicate: Callable[[list[tuple[str, dict[str, Any]]]], bool]) -> bool:
        """Wait (bounded) until ``predicate(messages)`` holds."""
        deadline = time.monotonic() + WAIT_S
        with self._cond:
            while not predicate(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.5))
            return True

    def of(self, leaf: str) -> list[dict[str, Any]]:
        with self._cond:
            return [p for t, p in self.messages if t.endswith("/" + leaf)]

    def seqs(self) -> list[int]:
        """Every ``seq`` seen, in arrival order (duplicates kept)."""
        with self._cond:
            return [int(p["seq"]) for _, p in self.messages if "seq" in p]

    def close(self) -> None:
        stop_group(self.proc, timeout_s=WAIT_S)  # type: ignore[arg-type]  # text mode: never read
        self._thread.join(WAIT_S)


def publish(*, port: int, ca: Path, cert: Path, key: Path, topic: str, payload: str) -> None:
    """``mosquitto_pub -q 1`` as the given identity (asserts success)."""
    args = ["mosquitto_pub", "-h", "localhost", "-p", str(port), "--cafile", str(ca)]
    args += ["--cert", str(cert), "--key", str(key), "--tls-version", "tlsv1.3"]
    args += ["-i", mqtt_client_id_for_cert(cert)]
    args += ["-V", "mqttv5", "-q", "1", "-t", topic, "-m", payload]
    result = subprocess.run(args, capture_output=True, text=True, timeout=WAIT_S, check=False)
    assert result.returncode == 0, result.stderr


class AgentProcess(ManagedProcess):
    """``trustfleet agent run --device DIR`` in its own session, started at once; output to a
    log file; :meth:`stop` (cleanup) SIGTERMs its group, then SIGKILLs it."""

    def __init__(self, device: Path, *extra: str) -> None:
        argv = [TRUSTFLEET, "agent", "run", "--device", device, *extra]
        log = device / f"agent-{secrets.token_hex(3)}.log"
        super().__init__(argv, log=log, name=f"agent {device.name}")
        self.start()

    def text(self) -> str:
        return self.log_text()

    def terminate(self) -> int:
        """SIGTERM to the agent alone; its exit code (waits, bounded)."""
        self.signal(signal.SIGTERM)
        assert self.proc is not None
        return self.proc.wait(WAIT_S)


class Proxy:
    """A TCP forwarder on a loopback port; ``cut`` drops every connection and stops accepting."""

    def __init__(self, *, port: int, target_port: int) -> None:
        self.port = port
        self.target = ("127.0.0.1", target_port)
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):  # shutdown wakes the blocked accept()
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def close(self) -> None:
        self.cut()
