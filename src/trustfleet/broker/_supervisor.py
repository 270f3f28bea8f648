"""Mosquitto as a supervised child: start, stop, restart with backoff, CRL reload, kicks."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cryptography import x509

from trustfleet.broker._binaries import build_guard, find_dynsec_plugin, find_mosquitto
from trustfleet.broker._config import ADMIN_USERNAME, BrokerConfig
from trustfleet.broker._control import run_commands
from trustfleet.broker._dynsec import quarantine_commands, release_commands
from trustfleet.broker._files import (
    AdminCredentials,
    broker_owner,
    crl_pem,
    write_all,
    write_atomic,
)
from trustfleet.broker._launch import launch
from trustfleet.broker._port import SyncReport
from trustfleet.broker._process import terminate
from trustfleet.broker._trust import BrokerCa, load_ca, trust_files, write_trust
from trustfleet.errors import Config, InvalidInput, TrustFleetError, Unavailable
from trustfleet.pki import DEVICE_ID_PATTERN

__all__ = ["Broker"]

logger = logging.getLogger(__name__)

_RELOAD_MARK = b"Reloading config."


class Broker:
    """Mosquitto, configured from a server home and supervised as a child process.

    Args:
        config: How the broker runs.

    ``start`` writes every file and starts Mosquitto in its own process group; a monitor
    thread restarts it if it dies (bounded, with backoff); ``stop`` ends it. Usable as a
    context manager once started.
    """

    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self._lock = threading.RLock()
        self._process: subprocess.Popen[bytes] | None = None
        self._admin: AdminCredentials | None = None
        self._dir_fd: int | None = None  # HOME/broker, inherited by Mosquitto
        self._stopping = threading.Event()
        self._monitor: threading.Thread | None = None
        self._started_at = 0.0
        self._consecutive = 0
        self.restarts = 0
        """How many times the supervisor restarted Mosquitto."""
        self.failure: TrustFleetError | None = None
        """Why the supervisor gave up, if it did."""

    @property
    def pid(self) -> int | None:
        """Mosquitto's process id while it runs."""
        with self._lock:
            proc = self._process
            return proc.pid if proc is not None and proc.poll() is None else None

    def start(
        self, *, crl_der: bytes | None = None, trust: Sequence[BrokerCa] = (), monitor: bool = True
    ) -> None:
        """Write the configuration and start Mosquitto; return once its listener accepts.

        Args:
            crl_der: The device CA's current CRL, DER (a home with one device CA).
            trust: Every device CA with its CRL (a CA rollover; replaces ``crl_der``).
            monitor: Run a thread that restarts Mosquitto if it dies (else call ``poll``).

        Raises:
            Config: Mosquitto or its plugin is missing, or a file is missing or unsafe.
            Unavailable: The port is in use, or Mosquitto did not come up in time.
            VerificationFailed: The CRL is not the device CA's.
        """
        with self._lock:
            if self._process is not None:
                raise InvalidInput("The broker is already started.", code="broker.started")
            binary = find_mosquitto(self.config.mosquitto)
            dynsec = find_dynsec_plugin(self.config.dynsec_plugin)
            files = trust_files(self.config.paths, crl_der=crl_der, trust=trust)
            directory = self.config.paths.directory
            directory.mkdir(mode=0o700, exist_ok=True)
            guard = build_guard(directory, timeout_s=self.config.compile_timeout_s)
            self._open_directory()
            self._admin = write_all(
                self.config, view=self._view(), guard=guard, dynsec=dynsec,
                crl=files.crlfile, cafile=files.cafile,
            )  # fmt: skip
            write_trust(files, self.config.paths)
            self._stopping.clear()
            self.failure = None
            try:
                self._spawn(binary)
            except TrustFleetError:
                self._close_directory()
                raise
        if monitor:
            self._monitor = threading.Thread(
                target=self._watch, name="trustfleet-broker-monitor", daemon=True
            )
            self._monitor.start()

    def stop(self) -> None:
        """Stop Mosquitto: SIGTERM to its process group, SIGKILL after ``stop_timeout_s``."""
        self._stopping.set()
        if self._monitor is not None:
            self._monitor.join(timeout=self.config.stop_timeout_s + 1)
            self._monitor = None
        with self._lock:
            if self._process is not None:
                terminate(self._process, timeout_s=self.config.stop_timeout_s)
                self._process = None
            self._close_directory()

    def poll(self) -> bool:
        """Restart Mosquitto if it died (bounded restarts with backoff).

        Returns:
            Whether Mosquitto is running afterwards.
        """
        with self._lock:
            proc = self._process
            if proc is None or self._stopping.is_set() or self.failure is not None:
                return self.pid is not None
            if proc.poll() is None:
                if time.monotonic() - self._started_at > self.config.stable_after_s:
                    self._consecutive = 0
                return True
            logger.warning("mosquitto exited with %s; restarting", proc.returncode)
            terminate(proc, timeout_s=self.config.stop_timeout_s)  # the rest of its group
            return self._restart()

    def reload_crl(self, crl_der: bytes) -> None:
        """Install a new device-CA CRL and make Mosquitto load it (SIGHUP), bounded wait.

        New TLS handshakes use the new CRL once this returns; live connections are not
        re-checked (use :meth:`kick`).

        Args:
            crl_der: The device CA's CRL, DER.

        Raises:
            VerificationFailed: The CRL is not the device CA's.
            Unavailable: Mosquitto is not running or did not confirm the reload in time.
        """
        pem = crl_pem(crl_der, issuer=self._device_ca())
        with self._lock:
            write_atomic(self.config.paths.crlfile, pem, mode=0o644)  # root's, world-readable
            self._sighup()

    def reload_trust(self, trust: Sequence[BrokerCa]) -> None:
        """Trust exactly these device CAs from now on, with their CRLs (a CA rollover).

        A new CA is found by new handshakes through ``trust.d``; the CRLs are reloaded
        (SIGHUP); live connections stay (broker/_trust.py).

        Raises:
            VerificationFailed: A CRL is not its CA's.
            Unavailable: Mosquitto is not running or did not confirm the reload in time.
        """
        files = trust_files(self.config.paths, crl_der=None, trust=trust)
        with self._lock:
            write_trust(files, self.config.paths)
            self._sighup()

    def reload_tls(self) -> None:
        """Install the broker's rotated certificate chain and key (``server rotate-tls``).

        Mosquitto 2.0 loads its listener's certfile and keyfile again on SIGHUP: new
        handshakes see the new certificate, live connections stay.

        Raises:
            Config: The files cannot be read or written.
            Unavailable: Mosquitto is not running or did not confirm the reload in time.
        """
        p = self.config.paths
        try:
            chain, key = p.tls_cert.read_bytes(), p.tls_key.read_bytes()
        except OSError as exc:
            raise Config(f"Cannot read {exc.filename}: {exc.strerror}.", code="broker.tls") from exc
        with self._lock:
            write_atomic(p.certfile, chain, mode=0o644)
            write_atomic(p.keyfile, key, mode=0o600, owner=broker_owner(self.config.run_as))
            self._sighup()

    def _sighup(self) -> None:
        """Signal Mosquitto to reload and wait for its log to say so (caller holds the lock)."""
        pid = self.pid
        if pid is None:
            raise Unavailable("The broker is not running.", code="broker.not_running")
        mark = self.config.paths.log.stat().st_size
        os.kill(pid, signal.SIGHUP)
        self._await_log(_RELOAD_MARK, after=mark, timeout_s=self.config.reload_timeout_s)

    def kick(self, username: str) -> None:
        """Disconnect every live connection authenticated as ``username``.

        Creates, then deletes, a dynamic-security client of that name: deleting a client
        makes the plugin disconnect every connection with that username, whether it logged
        in with a password or a certificate. The name is never left behind.

        Args:
            username: A device id or a configured service identity.

        Raises:
            InvalidInput: ``username`` is neither.
            Unavailable: The broker cannot be reached or refused the command.
        """
        if (
            not (
                DEVICE_ID_PATTERN.fullmatch(username) or username in self.config.service_identities
            )
            or username == ADMIN_USERNAME
        ):
            raise InvalidInput("Only devices and services can be kicked.", code="broker.kick")
        if self._admin is None:
            raise Unavailable("The broker is not running.", code="broker.not_running")
        responses = run_commands(
            self.config.paths.admin_socket,
            [
                {"command": "createClient", "username": username},
                {"command": "deleteClient", "username": username},
            ],
            username=self._admin.username,
            password=self._admin.password,
            timeout_s=self.config.control_timeout_s,
        )
        deleted = responses[-1]
        if deleted.get("error"):
            raise Unavailable(
                f"The broker could not kick {username}: {deleted['error']}.",
                code="broker.kick.failed",
            )
        logger.info("kicked %s from the broker", username)

    def quarantine(self, device_id: str) -> None:
        """Confine a device to its ``ota/`` and ``attest/`` topics, live connections included.

        Idempotent: a device already confined stays so. The confinement lives in the plugin's
        state, which is rewritten at every broker start: the owner of the quarantine (the
        store) re-applies it after a start (see ``quarantined``).

        Raises:
            Config: ``device_id`` is not a device id.
            Unavailable: The broker cannot be reached or refused the command.
        """
        self._control(quarantine_commands(device_id), tolerate="already exists")
        logger.info("quarantined %s at the broker", device_id)

    def release(self, device_id: str) -> None:
        """End a device's confinement (its connection is closed; it reconnects with full rights).

        Raises:
            Config: ``device_id`` is not a device id.
            Unavailable: The broker cannot be reached or refused the command.
        """
        self._control(release_commands(device_id), tolerate="not found")
        logger.info("released %s at the broker", device_id)

    def follow_up(self) -> None:
        """Nothing: Mosquitto ends a kicked client's connection at once."""

    def sync_devices(self, active: Iterable[str]) -> SyncReport:
        """Nothing to do: the guard plugin admits any device by its certificate and CRL."""
        del active
        return SyncReport()

    def quarantined(self) -> set[str]:
        """The devices confined now (the plugin's clients of the device-id form)."""
        responses = self._control([{"command": "listClients", "verbose": False}], tolerate="")
        names = responses[0].get("data", {}).get("clients", [])
        return {str(n) for n in names if DEVICE_ID_PATTERN.fullmatch(str(n))}

    def _control(self, commands: list[dict[str, object]], *, tolerate: str) -> list[dict[str, Any]]:
        if self._admin is None:
            raise Unavailable("The broker is not running.", code="broker.not_running")
        responses = run_commands(
            self.config.paths.admin_socket,
            [dict(c) for c in commands],
            username=self._admin.username,
            password=self._admin.password,
            timeout_s=self.config.control_timeout_s,
        )
        for response in responses:
            error = str(response.get("error") or "")
            if error and not (tolerate and tolerate in error.lower()):
                raise Unavailable(
                    f"The broker refused {response.get('command')}: {error}.",
                    code="broker.control.failed",
                )
        return responses

    def __enter__(self) -> Broker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- internals -------------------------------------------------------------------

    def _device_ca(self) -> x509.Certificate:
        return load_ca(self.config.paths.device_ca)

    def _open_directory(self) -> None:
        """Keep ``HOME/broker`` open: Mosquitto inherits it and reaches its files through it.

        Mosquitto drops to ``run_as`` right after parsing its configuration, so every file it
        opens later (certificates, CRL at each reload, ACL, plugins, the admin socket) must be
        reachable by that user; through ``/proc/self/fd/N`` only the directory's own mode
        counts, not the home's path above it.
        """
        self._close_directory()
        self._dir_fd = os.open(self.config.paths.directory, os.O_RDONLY | os.O_DIRECTORY)

    def _close_directory(self) -> None:
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None

    def _view(self) -> Path:
        assert self._dir_fd is not None  # noqa: S101  # opened by start
        return Path(f"/proc/self/fd/{self._dir_fd}")

    def _spawn(self, binary: Path) -> None:
        try:
            self._process = launch(self.config, binary, view=self._view(), dir_fd=self._dir_fd)
        except TrustFleetError:
            self._process = None
            raise
        self._started_at = time.monotonic()

    def _restart(self) -> bool:
        if self._consecutive >= self.config.max_restarts:
            self.failure = Unavailable(
                f"Mosquitto died {self._consecutive} times in a row; not restarting.",
                hint=f"See {self.config.paths.log}.",
                code="broker.gave_up",
            )
            logger.error("%s", self.failure.one_line())
            self._process = None
            return False
        backoff = min(
            self.config.restart_backoff_s * (2**self._consecutive), self.config.max_backoff_s
        )
        self._consecutive += 1
        if self._stopping.wait(backoff):
            return False
        try:
            self.config.paths.admin_socket.unlink(missing_ok=True)
            self._spawn(find_mosquitto(self.config.mosquitto))
        except TrustFleetError as exc:
            logger.warning("mosquitto restart failed: %s", exc.one_line())
            return False
        self.restarts += 1
        return True

    def _watch(self) -> None:
        while not self._stopping.wait(self.config.poll_interval_s):
            self.poll()
            if self.failure is not None:
                return

    def _await_log(self, mark: bytes, *, after: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.config.paths.log.open("rb") as log:
                log.seek(after)
                if mark in log.read():
                    return
            time.sleep(0.02)
        raise Unavailable(
            f"Mosquitto did not confirm the reload within {timeout_s} s.",
            code="broker.reload_timeout",
        )
