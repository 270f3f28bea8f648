"""A simulated TUF repository (python-tuf's Metadata API, test keys) served on loopback.

This is the repository *and* the attacker of the client tests: :class:`SimRepo` publishes
correctly signed metadata like the real service does, and tests then tamper with what it
serves (re-sign with other keys, replay old versions, serve other bytes, endless bodies).
Keys are software ``CryptoSigner`` keys in memory (never written anywhere): this side only
simulates the server.

:class:`RepoServer` is a threaded HTTP(S) server over ``SimRepo.files`` with Range support,
per-path misbehaviour (:class:`Behaviour`) and a log of the requests it saw.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from securesystemslib.signer import CryptoSigner, Signer
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Role,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer
from tuf.ngclient.fetcher import FetcherInterface

from trustfleet.agent.updater.fetcher import HttpFetcher
from trustfleet.agent.updater.tufclient import TufClient, init_trusted_root

TOP_ROLES = (Root.type, Timestamp.type, Snapshot.type, Targets.type)
ENDLESS_CAP_BYTES = 64 * 1024 * 1024
"""An 'endless' body stops here at the latest, so a client bug cannot hang a test forever."""


def in_days(days: float) -> datetime:
    return (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0)


class SimRepo:
    """Top-level roles with one ECDSA key each (threshold 1), consistent snapshots."""

    def __init__(self) -> None:
        self.signers: dict[str, list[Signer]] = {
            r: [CryptoSigner.generate_ecdsa()] for r in TOP_ROLES
        }
        root = Root(expires=in_days(365), consistent_snapshot=True)
        for role in TOP_ROLES:
            root.roles[role] = Role([], threshold=1)
            root.add_key(self.signers[role][0].public_key, role)
        self.md: dict[str, Metadata[Any]] = {
            Root.type: Metadata(root),
            Targets.type: Metadata(Targets(expires=in_days(90))),
            Snapshot.type: Metadata(Snapshot(expires=in_days(30))),
            Timestamp.type: Metadata(Timestamp(expires=in_days(1))),
        }
        self.files: dict[str, bytes] = {}
        self.target_data: dict[str, bytes] = {}
        self.timestamps: list[bytes] = []
        self.sign(Root.type)
        self._store_root()
        self.publish(bump=False)

    # --- reading -------------------------------------------------------------------------
    @property
    def root(self) -> Root:
        return self.md[Root.type].signed  # type: ignore[no-any-return]

    def root_bytes(self, version: int | None = None) -> bytes:
        return self.files[f"metadata/{version or self.root.version}.root.json"]

    # --- publishing ----------------------------------------------------------------------
    def sign(self, role: str, *, signers: list[Signer] | None = None) -> bytes:
        """Sign ``role`` (replacing its signatures) and return its bytes."""
        md = self.md[role]
        md.signatures.clear()
        for signer in signers if signers is not None else self.signers[role]:
            md.sign(signer, append=True)
        return md.to_bytes(JSONSerializer(compact=True))

    def add_target(self, path: str, data: bytes, *, custom: dict[str, Any] | None = None) -> None:
        target = TargetFile.from_data(path, data, ["sha256"])
        if custom:
            target.unrecognized_fields["custom"] = custom
        self.md[Targets.type].signed.targets[path] = target
        self.target_data[path] = data
        dirname, sep, name = path.rpartition("/")
        self.files[f"targets/{dirname}{sep}{target.hashes['sha256']}.{name}"] = data

    def publish(
        self,
        *,
        bump: bool = True,
        targets_signers: list[Signer] | None = None,
        resign_targets: bool = True,
        expires: dict[str, datetime] | None = None,
    ) -> None:
        """A new targets, snapshot and timestamp version (``bump=False``: the first one).

        ``targets_signers`` replaces the targets key(s); ``resign_targets=False`` keeps the
        previous targets signatures over the changed content (what an attacker without the
        targets key can do).
        """
        for role in (Targets.type, Snapshot.type, Timestamp.type):
            signed = self.md[role].signed
            if bump:
                signed.version += 1
            if expires and role in expires:
                signed.expires = expires[role]
        targets = self.md[Targets.type].signed
        if resign_targets:
            targets_bytes = self.sign(Targets.type, signers=targets_signers)
        else:
            targets_bytes = self.md[Targets.type].to_bytes(JSONSerializer(compact=True))
        self.files[f"metadata/{targets.version}.targets.json"] = targets_bytes
        snapshot = self.md[Snapshot.type].signed
        snapshot.meta["targets.json"] = MetaFile(targets.version)
        self.files[f"metadata/{snapshot.version}.snapshot.json"] = self.sign(Snapshot.type)
        self.md[Timestamp.type].signed.snapshot_meta = MetaFile(snapshot.version)
        self.store_timestamp()

    def store_timestamp(self) -> None:
        """Sign the timestamp as it is now and serve it (earlier versions kept in history)."""
        self.files["metadata/timestamp.json"] = self.sign(Timestamp.type)
        self.timestamps.append(self.files["metadata/timestamp.json"])

    def rotate_root(self, roles: tuple[str, ...]) -> None:
        """Root v+1 with a fresh key for each of ``roles``, signed by old and new root keys."""
        old_root_signers = list(self.signers[Root.type])
        root = self.root
        root.version += 1
        for role in roles:
            for keyid in list(root.roles[role].keyids):
                root.revoke_key(keyid, role)
            self.signers[role] = [CryptoSigner.generate_ecdsa()]
            root.add_key(self.signers[role][0].public_key, role)
        signers = old_root_signers + (self.signers[Root.type] if Root.type in roles else [])
        self.sign(Root.type, signers=signers)
        self._store_root()

    def _store_root(self) -> None:
        md = self.md[Root.type]
        self.files[f"metadata/{self.root.version}.root.json"] = md.to_bytes(
            JSONSerializer(compact=True)
        )

    def target_url_path(self, path: str) -> str:
        """Where the server keeps ``path`` (hash-prefixed name)."""
        sha = sha256_hex(self.target_data[path])
        dirname, sep, name = path.rpartition("/")
        return f"targets/{dirname}{sep}{sha}.{name}"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- the server --------------------------------------------------------------------------
@dataclass
class Behaviour:
    """How the server misbehaves for one path."""

    body: bytes | None = None  # serve these bytes instead
    endless: bool = False  # send bytes until the client hangs up (no Content-Length)
    cut_after: int | None = None  # close the socket after this many body bytes (once per use)
    cut_times: int = 1
    ignore_range: bool = False  # answer 200 with the whole file even to a Range request


@dataclass
class Seen:
    path: str
    range: str | None
    status: int


@dataclass
class RepoState:
    repo: SimRepo
    behaviour: dict[str, Behaviour] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


_RANGE = re.compile(r"^bytes=(\d+)-$")


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test logs quiet
        return

    def do_GET(self) -> None:
        state = self.server.state
        path = self.path.split("?", 1)[0].lstrip("/")
        with state.lock:
            behaviour = state.behaviour.get(path, Behaviour())
            data = behaviour.body if behaviour.body is not None else state.repo.files.get(path)
        range_header = self.headers.get("Range")
        if behaviour.endless:
            self._record(path, range_header, 200)
            self._endless()
            return
        if data is None:
            self._record(path, range_header, 404)
            self._reply(404, b"not found", {})
            return
        start = 0
        match = _RANGE.match(range_header or "")
        if match and not behaviour.ignore_range:
            start = int(match.group(1))
            if start >= len(data):
                self._record(path, range_header, 416)
                self._reply(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                return
        status = 206 if start else 200
        self._record(path, range_header, status)
        headers = {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"} if start else {}
        body = data[start:]
        if behaviour.cut_after is not None and behaviour.cut_times > 0:
            with state.lock:
                behaviour.cut_times -= 1
            self._reply(status, body, headers, cut_after=behaviour.cut_after)
            return
        self._reply(status, body, headers)

    def _record(self, path: str, range_header: str | None, status: int) -> None:
        with self.server.state.lock:
            self.server.state.seen.append(Seen(path, range_header, status))

    def _reply(
        self, status: int, body: bytes, headers: dict[str, str], *, cut_after: int | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if cut_after is None:
            self.wfile.write(body)
            return
        self.wfile.write(body[:cut_after])
        self.wfile.flush()
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(2)  # socket.SHUT_RDWR: a cut, not a clean end

    def _endless(self) -> None:
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")  # no length announced, never ends
        self.end_headers()
        self.close_connection = True
        block = b"\x00" * 65536
        with contextlib.suppress(OSError):
            for _ in range(ENDLESS_CAP_BYTES // len(block)):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: RepoState, tls: ssl.SSLContext | None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state
        self.tls = tls

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = super().get_request()
        if self.tls is None:
            return sock, addr
        return self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is not None:
            try:
                request.settimeout(10)
                request.do_handshake()
            except (OSError, ssl.SSLError):
                return  # a refused client certificate ends here
        super().finish_request(request, client_address)


@contextlib.contextmanager
def serving(repo: SimRepo, *, tls: ssl.SSLContext | None = None) -> Iterator[tuple[str, RepoState]]:
    """Serve ``repo`` on a free loopback port; yields (base URL, state) and stops after."""
    state = RepoState(repo)
    server = _Server(state, tls)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    scheme = "https" if tls else "http"
    host = "localhost" if tls else "127.0.0.1"
    try:
        yield f"{scheme}://{host}:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


# --- the client side ---------------------------------------------------------------------
def trusted_state(metadata_dir: Path) -> dict[str, bytes]:
    """Every file (symlinks followed, and where they point) of the trusted metadata."""
    state: dict[str, bytes] = {}
    for path in sorted(metadata_dir.rglob("*")):
        name = str(path.relative_to(metadata_dir))
        if path.is_symlink():
            state[name + " ->"] = os.readlink(path).encode()
        if path.is_file():
            state[name] = path.read_bytes()
    return state


def new_client(
    base_url: str, work: Path, root: bytes, *, fetcher: FetcherInterface | None = None
) -> TufClient:
    """A TufClient trusting ``root``, its files under ``work``."""
    init_trusted_root(work / "metadata", root)
    return TufClient(
        metadata_dir=work / "metadata",
        metadata_url=f"{base_url}/metadata",
        targets_url=f"{base_url}/targets",
        download_dir=work / "downloads",
        fetcher=fetcher or HttpFetcher(),
    )
