"""The Go verifier checks its own vectors, and every tampered input makes it exit 1.

``tlogverify gen`` builds a log of deterministic entries with Go's ``sumdb/tlog``, signs its
checkpoints with ``sumdb/note`` and writes proofs and C2SP tiles; the verify subcommands must
accept all of it. Each tamper case alters one file and names the subcommand that must reject it,
so the cross-implementation tests (test_go_interop.py) can trust the verifier's "ok".
"""

from __future__ import annotations

import base64
import ipaddress
import shutil
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from support.certs import cert_builder
from support.tlogverify import Vectors, flip_byte, generate, run_tlogverify, verify_fails, verify_ok

ORIGIN = "trustfleet.test/go-vectors"
SIZE = 1000  # four level-0 tiles (the last partial) and a partial level-1 tile
LOOPBACK = ipaddress.IPv4Address("127.0.0.1")
# The test server's certificate is valid for any date the suite may run on (Go's clock is real).
CERT_FROM = datetime(2000, 1, 1, tzinfo=UTC)
CERT_UNTIL = datetime(9999, 12, 31, tzinfo=UTC)


@pytest.fixture(scope="module")
def vectors(tlogverify: Path, tmp_path_factory: pytest.TempPathFactory) -> Vectors:
    """Go's vectors for a log of 1,000 entries (never modified: tampering works on copies)."""
    return generate(
        tlogverify, tmp_path_factory.mktemp("go") / "v", size=SIZE, seed="01ab", origin=ORIGIN
    )


@pytest.fixture
def copy(vectors: Vectors, tmp_path: Path) -> Vectors:
    """A private copy of the vectors that a test may alter."""
    target = tmp_path / "v"
    shutil.copytree(vectors.root, target)
    return Vectors(root=target, manifest=vectors.manifest)


def test_gen_is_deterministic(tlogverify: Path, vectors: Vectors, tmp_path: Path) -> None:
    again = generate(tlogverify, tmp_path / "again", size=SIZE, seed="01ab", origin=ORIGIN)
    assert again.manifest == vectors.manifest
    assert (again.root / "checkpoint").read_bytes() == (vectors.root / "checkpoint").read_bytes()


def test_gen_output_verifies_with_every_subcommand(tlogverify: Path, vectors: Vectors) -> None:
    v, checkpoint = vectors, vectors.root / "checkpoint"
    result = verify_ok(tlogverify, "note", "--vkey", v.vkey, "--note", checkpoint)
    assert (result["origin"], result["size"]) == (ORIGIN, SIZE)
    assert result["root"] == v.manifest["root"]
    assert result["witnesses"] == [] and result["extensions"] == []
    for index in v.manifest["inclusion"]:
        proved = verify_ok(tlogverify, *inclusion_args(v, index))
        assert proved["index"] == index
    for size in v.manifest["consistency"]:
        verify_ok(tlogverify, *consistency_args(v, size))
    assert verify_ok(tlogverify, *tiles_args(v))["entries"] == SIZE


def inclusion_args(v: Vectors, index: int) -> list[str | Path]:
    return [
        "inclusion", "--vkey", v.vkey, "--note", v.root / "checkpoint", "--index", str(index),
        "--entry", v.root / f"entries/{index}", "--proof", v.root / f"proofs/incl-{index}",
    ]  # fmt: skip


def consistency_args(v: Vectors, old_size: int) -> list[str | Path]:
    return [
        "consistency", "--vkey", v.vkey, "--old", v.root / f"old-{old_size}",
        "--new", v.root / "checkpoint", "--proof", v.root / f"proofs/cons-{old_size}",
    ]  # fmt: skip


def flip_in_signature(path: Path) -> None:
    """Change one base64 character in the middle of a note's last signature."""
    data = path.read_bytes()
    line_start = data.rstrip(b"\n").rfind(b"\n") + 1
    b64_start = data.rfind(b" ") + 1
    assert b64_start > line_start
    flip_byte(path, b64_start + 20)


def rewrite_proof(path: Path, edit: Callable[[list[str]], list[str]]) -> None:
    path.write_text("".join(f"{line}\n" for line in edit(path.read_text().split())))


def flip_hash(lines: list[str]) -> list[str]:
    raw = bytearray(base64.b64decode(lines[0]))
    raw[5] ^= 0x01
    return [base64.b64encode(bytes(raw)).decode(), *lines[1:]]


def drop_last(lines: list[str]) -> list[str]:
    return lines[:-1]


def add_one(lines: list[str]) -> list[str]:
    return [*lines, lines[0]]


def note_args(v: Vectors) -> list[str | Path]:
    return ["note", "--vkey", v.vkey, "--note", v.root / "checkpoint"]


def tiles_args(v: Vectors) -> list[str | Path]:
    return ["tiles", "--vkey", v.vkey, "--base", v.root / "log"]


MID = SIZE // 2
OLD = SIZE // 3

# (case id, how to tamper the copy, the subcommand arguments that must now fail). A case without
# a tamper passes arguments that do not fit the (valid) vectors: another index, swapped notes.
Tamper = Callable[[Vectors], None] | None
Args = Callable[[Vectors], list[str | Path]]
TAMPERS: list[tuple[str, Tamper, Args]] = [
    ("note-text", lambda v: flip_byte(v.root / "checkpoint", len(ORIGIN) + 7),
     note_args),
    ("note-signature", lambda v: flip_in_signature(v.root / "checkpoint"),
     note_args),
    ("inclusion-entry", lambda v: flip_byte(v.root / f"entries/{MID}", 3),
     lambda v: inclusion_args(v, MID)),
    ("inclusion-proof-hash", lambda v: rewrite_proof(v.root / f"proofs/incl-{MID}", flip_hash),
     lambda v: inclusion_args(v, MID)),
    ("inclusion-proof-short", lambda v: rewrite_proof(v.root / f"proofs/incl-{MID}", drop_last),
     lambda v: inclusion_args(v, MID)),
    ("inclusion-proof-long", lambda v: rewrite_proof(v.root / f"proofs/incl-{MID}", add_one),
     lambda v: inclusion_args(v, MID)),
    ("inclusion-note", lambda v: flip_in_signature(v.root / "checkpoint"),
     lambda v: inclusion_args(v, MID)),
    ("inclusion-other-index", None,
     lambda v: [*inclusion_args(v, MID)[:6], str(MID + 1), *inclusion_args(v, MID)[7:]]),
    ("consistency-proof-hash", lambda v: rewrite_proof(v.root / f"proofs/cons-{OLD}", flip_hash),
     lambda v: consistency_args(v, OLD)),
    ("consistency-old-note", lambda v: flip_byte(v.root / f"old-{OLD}", len(ORIGIN) + 6),
     lambda v: consistency_args(v, OLD)),
    ("consistency-rollback", None,
     lambda v: ["consistency", "--vkey", v.vkey, "--old", v.root / "checkpoint",
                "--new", v.root / f"old-{OLD}", "--proof", v.root / f"proofs/cons-{OLD}"]),
    ("tiles-hash-tile", lambda v: flip_byte(v.root / "log/tile/0/001", 100),
     tiles_args),
    ("tiles-upper-tile", lambda v: flip_byte(v.root / "log/tile/1/000.p/3", 40),
     tiles_args),
    ("tiles-entry-bundle", lambda v: flip_byte(v.root / "log/tile/entries/002", 9),
     tiles_args),
    ("tiles-missing-bundle", lambda v: (v.root / "log/tile/entries/003.p/232").unlink(),
     tiles_args),
    ("tiles-over-max-entries", None, lambda v: [*tiles_args(v), "--max-entries", str(SIZE - 1)]),
    ("tiles-checkpoint", lambda v: flip_in_signature(v.root / "log/checkpoint"),
     tiles_args),
]  # fmt: skip


@pytest.mark.parametrize(("tamper", "args"), [c[1:] for c in TAMPERS], ids=[c[0] for c in TAMPERS])
def test_every_tamper_fails(tlogverify: Path, copy: Vectors, tamper: Tamper, args: Args) -> None:
    if tamper is not None:
        verify_ok(tlogverify, *args(copy))  # the case fails only because of its tamper
        tamper(copy)
    verify_fails(tlogverify, *args(copy))


def test_a_checkpoint_signed_by_another_key_fails(
    tlogverify: Path, vectors: Vectors, tmp_path: Path
) -> None:
    other = generate(tlogverify, tmp_path / "other", size=SIZE, seed="ffff", origin=ORIGIN)
    forged = Vectors(root=other.root, manifest=vectors.manifest)  # other's files, our key
    assert "signature" in verify_fails(tlogverify, *note_args(forged))
    verify_fails(tlogverify, *tiles_args(forged))


def test_tiles_of_an_older_checkpoint_read_the_full_tiles(tlogverify: Path, tmp_path: Path) -> None:
    """A partial tile or bundle the log no longer serves is read as its full tile's prefix."""
    big = generate(tlogverify, tmp_path / "big", size=70_000, seed="02", origin=ORIGIN)
    half = 35_000  # level 0: bundle and tile 136.p/184, level 1: 000.p/136; only full ones exist
    assert half in big.manifest["consistency"]
    shutil.copy(big.root / f"old-{half}", big.root / "log" / "checkpoint")
    assert not (big.root / "log/tile/0/136.p/184").exists()
    result = verify_ok(tlogverify, "tiles", "--vkey", big.vkey, "--base", big.root / "log")
    assert result["entries"] == half


USAGE_ERRORS = [
    ("no-subcommand", []),
    ("unknown-subcommand", ["frobnicate"]),
    ("missing-flag", ["note", "--vkey", "x+00000000+AQ=="]),
    ("bad-vkey", ["note", "--vkey", "not-a-key", "--note", "/dev/null"]),
    ("bad-witness-key", ["note", "--vkey", "x", "--note", "/dev/null", "--witness", "w+1+AA=="]),
    ("missing-file", ["note", "--vkey", "x+00000000+AQ==", "--note", "/nonexistent/checkpoint"]),
    ("negative-index", ["inclusion", "--vkey", "v", "--note", "n", "--index", "-2", "--entry", "e",
                        "--proof", "p"]),
    ("gen-bad-seed", ["gen", "--n", "3", "--seed", "xyz", "--origin", "o", "--out", "/tmp/x"]),
    ("stray-argument", ["tiles", "--vkey", "v", "--base", "b", "extra"]),
]  # fmt: skip


@pytest.mark.parametrize("args", [c[1] for c in USAGE_ERRORS], ids=[c[0] for c in USAGE_ERRORS])
def test_usage_errors_exit_2(tlogverify: Path, args: list[str]) -> None:
    result = run_tlogverify(tlogverify, *args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() and result.stdout == ""


@contextmanager
def https_server(directory: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Serve ``directory`` over HTTPS on loopback; yields (base URL, CA certificate PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        cert_builder("127.0.0.1", key, not_before=CERT_FROM, not_after=CERT_UNTIL)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(LOOPBACK)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem, key_pem = tmp_path / "ca.pem", tmp_path / "key.pem"
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_pem, key_pem)
    handler = partial(QuietHandler, directory=str(directory))
    with ThreadingHTTPServer((str(LOOPBACK), 0), handler) as server:
        server.socket = context.wrap_socket(server.socket, server_side=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"https://127.0.0.1:{server.server_address[1]}/audit/log", cert_pem
        finally:
            server.shutdown()
            thread.join()


class QuietHandler(SimpleHTTPRequestHandler):
    """Serves files without logging each request to stderr."""

    def log_message(self, format: str, *args: object) -> None:
        """Drop the request log."""


def test_tiles_over_https(tlogverify: Path, vectors: Vectors, tmp_path: Path) -> None:
    site = tmp_path / "site"
    shutil.copytree(vectors.root / "log", site / "audit" / "log")
    with https_server(site, tmp_path) as (base, ca):
        result = verify_ok(
            tlogverify, "tiles", "--vkey", vectors.vkey, "--base", base, "--cacert", ca
        )
        assert result["entries"] == SIZE
        reason = verify_fails(tlogverify, "tiles", "--vkey", vectors.vkey, "--base", base)
        assert "certificate" in reason
        verify_fails(
            tlogverify, "tiles", "--vkey", vectors.vkey, "--base", base + "/missing", "--cacert", ca
        )
