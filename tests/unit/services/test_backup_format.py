"""The backup envelope and archive: round trips, wrong keys, tampering, hostile entries."""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from trustfleet.errors import InvalidInput, VerificationFailed
from trustfleet.services import backup_crypto as bc
from trustfleet.services.backup_archive import ArchiveLimits, ArchiveReader, ArchiveWriter

FAST = bc.ScryptCost(log_n=10, r=8, p=1)  # tests only: the default cost is 2**17
PASS = b"correct horse battery staple"


def _seal(plain: bytes, key: bc.BackupKey) -> bytes:
    out = io.BytesIO()
    writer = bc.EncryptingWriter(out, key)
    for start in range(0, len(plain), 1000):
        writer.write(plain[start : start + 1000])
    writer.close()
    return out.getvalue()


def _open(data: bytes, **keys: object) -> bytes:
    stream = io.BytesIO(data)
    header = bc.read_header(stream)
    return b"".join(bc.decrypt_chunks(stream, header, **keys))  # type: ignore[arg-type]


def _small_chunks(key: bc.BackupKey) -> bc.BackupKey:
    return bc.BackupKey(key.key, {**key.header, "chunk_bytes": 64})


@pytest.mark.parametrize("size", [0, 1, 64, 65, 1000], ids=lambda s: f"{s}B")
def test_passphrase_round_trip(size: int) -> None:
    key = _small_chunks(bc.key_for_passphrase(PASS, cost=FAST))
    plain = bytes(range(256)) * 4
    assert _open(_seal(plain[:size], key), passphrase=PASS) == plain[:size]


def test_recipient_round_trip_and_other_identity() -> None:
    identity = X25519PrivateKey.generate()
    key = bc.key_for_recipient(identity.public_key())
    sealed = _seal(b"secret store", key)
    assert _open(sealed, identity=identity) == b"secret store"
    with pytest.raises(VerificationFailed) as info:
        _open(sealed, identity=X25519PrivateKey.generate())
    assert info.value.code == "backup.key.wrong"
    with pytest.raises(InvalidInput) as kind:
        _open(sealed, passphrase=PASS)
    assert kind.value.code == "backup.key.kind"


def test_wrong_passphrase_is_one_clear_error() -> None:
    sealed = _seal(b"x" * 10, bc.key_for_passphrase(PASS, cost=FAST))
    with pytest.raises(VerificationFailed) as info:
        _open(sealed, passphrase=b"wrong passphrase here")
    assert info.value.code == "backup.key.wrong"


def test_short_passphrase_refused() -> None:
    with pytest.raises(InvalidInput):
        bc.key_for_passphrase(b"short")


def _chunks(data: bytes) -> tuple[bytes, list[bytes]]:
    """(header part, each length-prefixed chunk)."""
    (size,) = struct.unpack(">I", data[8:12])
    head, rest, parts = data[: 12 + size], data[12 + size :], []
    while rest:
        (n,) = struct.unpack(">I", rest[:4])
        parts.append(rest[: 4 + n])
        rest = rest[4 + n :]
    return head, parts


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


TAMPERS: dict[str, Callable[[bytes], bytes]] = {
    "chunk-dropped": lambda d: _chunks(d)[0] + b"".join(_chunks(d)[1][1:]),
    "chunks-swapped": lambda d: (
        _chunks(d)[0] + _chunks(d)[1][1] + _chunks(d)[1][0] + b"".join(_chunks(d)[1][2:])
    ),
    "last-chunk-cut": lambda d: _chunks(d)[0] + b"".join(_chunks(d)[1][:-1]),
    "bytes-cut": lambda d: d[:-5],
    "bit-flipped": lambda d: _flip(d, len(d) // 2),
    "header-changed": lambda d: d.replace(b'"chunk_bytes":64', b'"chunk_bytes":65'),
    "chunk-repeated": lambda d: (
        _chunks(d)[0] + _chunks(d)[1][0] + _chunks(d)[1][0] + b"".join(_chunks(d)[1][1:])
    ),
    "bytes-appended": lambda d: d + b"\x00\x00\x00\x10" + b"x" * 16,
}


@pytest.mark.parametrize("tamper", list(TAMPERS.values()), ids=list(TAMPERS))
def test_tampering_is_detected(tamper: Callable[[bytes], bytes]) -> None:
    key = _small_chunks(bc.key_for_passphrase(PASS, cost=FAST))
    sealed = _seal(bytes(300), key)
    with pytest.raises((VerificationFailed, InvalidInput)):
        _open(tamper(sealed), passphrase=PASS)


@pytest.mark.parametrize(
    "change",
    [
        {"format": 2},
        {"kdf": {"name": "scrypt", "salt": "00", "log_n": 30, "r": 8, "p": 1}},
        {"kdf": {"name": "rot13"}},
        {"chunk_bytes": 1 << 30},
    ],
    ids=["format", "scrypt-absurd", "kdf-unknown", "chunk-absurd"],
)
def test_absurd_headers_refused_before_work(change: dict[str, object]) -> None:
    key = bc.key_for_passphrase(PASS, cost=FAST)
    header = json.dumps({**key.header, **change}).encode()
    data = bc.MAGIC + struct.pack(">I", len(header)) + header
    with pytest.raises(InvalidInput) as info:
        bc.read_header(io.BytesIO(data))
    assert info.value.code == "backup.header"


def test_recipient_and_identity_files() -> None:
    identity = X25519PrivateKey.generate()
    pem = identity.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert bc.load_recipient(pem).public_bytes_raw() == identity.public_key().public_bytes_raw()
    with pytest.raises(InvalidInput):
        bc.load_recipient(b"nonsense")
    with pytest.raises(InvalidInput):
        bc.load_identity(pem)


# --- the archive inside -----------------------------------------------------------------------


def _archive(build: Callable[[ArchiveWriter], None]) -> list[bytes]:
    out = io.BytesIO()
    writer = ArchiveWriter(out)
    build(writer)
    return [out.getvalue()]


def _records(*entries: dict[str, object], data: bytes = b"") -> list[bytes]:
    body = b""
    for entry in entries:
        raw = json.dumps(entry).encode()
        body += struct.pack(">I", len(raw)) + raw
    return [body + data]


def test_archive_round_trip(tmp_path: Path) -> None:
    def build(writer: ArchiveWriter) -> None:
        writer.add_dir("secrets", mode=0o40700)
        writer.add_file("secrets/pin", io.BytesIO(b"1234"), size=4, mode=0o100600)
        writer.add_file("trustfleet.toml", io.BytesIO(b"[api]\n"), size=6, mode=0o644)
        writer.finish({"schema_revision": "0010"})

    dest = tmp_path / "home"
    dest.mkdir()
    restored = ArchiveReader(dest).extract(iter(_archive(build)))
    assert restored.files == 2 and restored.meta == {"schema_revision": "0010"}
    assert (dest / "secrets" / "pin").read_bytes() == b"1234"
    assert (dest / "secrets").stat().st_mode & 0o777 == 0o700
    assert (dest / "secrets" / "pin").stat().st_mode & 0o777 == 0o600


HOSTILE = {
    "dot-dot": _records({"type": "file", "path": "../evil", "mode": 0o600, "size": 0}),
    "absolute": _records({"type": "file", "path": "/etc/evil", "mode": 0o600, "size": 0}),
    "symlink": _records({"type": "symlink", "path": "x", "target": "/etc/passwd", "mode": 0}),
    "device": _records({"type": "chardev", "path": "x", "mode": 0o600}),
    "setuid": _records({"type": "file", "path": "x", "mode": 0o4755, "size": 0}),
    "group-writable": _records({"type": "file", "path": "x", "mode": 0o664, "size": 0}),
    "absurd-size": _records({"type": "file", "path": "x", "mode": 0o600, "size": 1 << 50}),
    "file-before-folder": _records({"type": "file", "path": "a/x", "mode": 0o600, "size": 0}),
    "twice": _records(
        {"type": "file", "path": "x", "mode": 0o600, "size": 0},
        {"type": "file", "path": "x", "mode": 0o600, "size": 0},
    ),
    "not-in-manifest": _records(
        {"type": "file", "path": "x", "mode": 0o600, "size": 1},
        {"type": "manifest", "files": {}, "meta": {}},
        data=b"",
    ),
    "cut-short": _records({"type": "file", "path": "x", "mode": 0o600, "size": 10}),
}


@pytest.mark.parametrize("chunks", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_archives_refused(tmp_path: Path, chunks: list[bytes]) -> None:
    dest = tmp_path / "home"
    dest.mkdir()
    with pytest.raises((InvalidInput, VerificationFailed)):
        ArchiveReader(dest, limits=ArchiveLimits(max_file_bytes=1 << 20)).extract(iter(chunks))
    assert not (tmp_path / "evil").exists()


@pytest.mark.parametrize(
    "sizes", [[64], [64, 64], [128], [200, 1, 63, 64, 65], [0, 0, 64], [63, 1, 1]], ids=str
)
def test_any_write_sizes_round_trip(sizes: list[int]) -> None:
    key = _small_chunks(bc.key_for_passphrase(PASS, cost=FAST))
    out, plain = io.BytesIO(), b""
    writer = bc.EncryptingWriter(out, key)
    for index, size in enumerate(sizes):
        piece = bytes([index]) * size
        writer.write(piece)
        plain += piece
    writer.close()
    assert _open(out.getvalue(), passphrase=PASS) == plain
