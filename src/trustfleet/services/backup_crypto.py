"""The encrypted envelope of a server backup: a header, then AES-256-GCM chunks (pure).

Layout of a backup file::

    MAGIC (8 bytes "TFBACKUP") | header length (u32, big-endian) | header (canonical JSON)
    chunk* : ciphertext length (u32) | AES-256-GCM(plaintext ≤ chunk_bytes) with its 16-byte tag

The header names the format version, the chunk size, a random nonce prefix and how the key
is made: ``scrypt`` (RFC 7914) from a passphrase with its salt and cost, or ``x25519``
(RFC 7748) with an ephemeral public key and the recipient's key id (ECDH, then HKDF-SHA256,
RFC 5869). Chunks follow the STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizár 2015):
the 12-byte nonce is the prefix, a 32-bit counter and a last-chunk flag, and every chunk
authenticates the whole header as associated data. So a chunk dropped, repeated, moved or cut
short, a header changed, or a file cut after any chunk but the last, fails to decrypt. The
manifest (the file list with SHA-256) is inside the encryption (:mod:`backup_archive`).

Nothing here does I/O but on the streams it is given; nothing reads a clock.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from trustfleet.errors import InvalidInput, VerificationFailed

__all__ = [
    "CHUNK_BYTES",
    "FORMAT_VERSION",
    "MAGIC",
    "BackupKey",
    "EncryptingWriter",
    "ScryptCost",
    "decrypt_chunks",
    "key_for_passphrase",
    "key_for_recipient",
    "load_identity",
    "load_recipient",
    "read_header",
]

MAGIC: Final = b"TFBACKUP"
FORMAT_VERSION: Final = 1
CHUNK_BYTES: Final = 1 << 20
"""Plaintext bytes per chunk."""
MAX_HEADER_BYTES: Final = 4096
MAX_CHUNK_BYTES: Final = 16 << 20
_TAG_BYTES: Final = 16
_PREFIX_BYTES: Final = 7
_INFO: Final = b"trustfleet-backup v1"
_MAX_SCRYPT_LOG_N: Final = 20  # 2^20 x 128 x r bytes: 1 GiB at r=8; more is refused
_TAMPERED_HINT: Final = "the file was changed, cut short or is not a TrustFleet backup"


@dataclass(frozen=True)
class ScryptCost:
    """scrypt's cost (RFC 7914): N = 2**log_n, r, p. The default takes about 0.5 s and
    128 MiB; restore refuses costs above 2**20 (an absurd header would exhaust memory)."""

    log_n: int = 17
    r: int = 8
    p: int = 1


@dataclass(frozen=True)
class BackupKey:
    """The file key of one backup and the header that says how to make it again."""

    key: bytes = field(repr=False)
    header: dict[str, Any]


def _hkdf(secret: bytes, *, salt: bytes, info: bytes) -> tuple[bytes, bytes]:
    out = HKDF(algorithm=hashes.SHA256(), length=64, salt=salt, info=_INFO + info).derive(secret)
    return out[:32], out[32:]


def _check_value(check: bytes) -> str:
    return hashlib.sha256(b"key-check" + check).hexdigest()[:32]


def _scrypt(passphrase: bytes, *, salt: bytes, cost: ScryptCost) -> bytes:
    kdf = Scrypt(salt=salt, length=32, n=2**cost.log_n, r=cost.r, p=cost.p)
    return kdf.derive(passphrase)


def key_for_passphrase(passphrase: bytes, *, cost: ScryptCost | None = None) -> BackupKey:
    """A new file key from a passphrase (fresh salt and nonce prefix).

    Raises:
        InvalidInput: The passphrase is shorter than 12 bytes.
    """
    if len(passphrase) < 12:
        raise InvalidInput(
            "the backup passphrase is shorter than 12 characters",
            hint="use a long passphrase (a few words)", code="backup.passphrase.short",
        )  # fmt: skip
    cost = cost or ScryptCost()
    salt = os.urandom(16)
    key, check = _hkdf(_scrypt(passphrase, salt=salt, cost=cost), salt=salt, info=b" scrypt")
    kdf = {"name": "scrypt", "salt": salt.hex(), "log_n": cost.log_n, "r": cost.r, "p": cost.p}
    return BackupKey(key, _header(kdf, check))


def key_for_recipient(recipient: X25519PublicKey) -> BackupKey:
    """A new file key for the holder of the private half of ``recipient`` (ECDH + HKDF)."""
    ephemeral = X25519PrivateKey.generate()
    eph_raw = ephemeral.public_key().public_bytes_raw()
    rcpt_raw = recipient.public_bytes_raw()
    key, check = _hkdf(ephemeral.exchange(recipient), salt=eph_raw + rcpt_raw, info=b" x25519")
    kdf = {"name": "x25519", "ephemeral": eph_raw.hex(), "recipient": _key_id(rcpt_raw)}
    return BackupKey(key, _header(kdf, check))


def _key_id(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:16]


def _header(kdf: dict[str, Any], check: bytes) -> dict[str, Any]:
    return {
        "format": FORMAT_VERSION,
        "cipher": "AES-256-GCM",
        "chunk_bytes": CHUNK_BYTES,
        "nonce_prefix": os.urandom(_PREFIX_BYTES).hex(),
        "kdf": kdf,
        "key_check": _check_value(check),
    }


def _header_bytes(header: dict[str, Any]) -> bytes:
    body = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    return MAGIC + struct.pack(">I", len(body)) + body


def _nonce(prefix: bytes, counter: int, *, last: bool) -> bytes:
    return prefix + struct.pack(">IB", counter, 1 if last else 0)


class EncryptingWriter:
    """A write-only stream that encrypts into ``out`` in authenticated chunks.

    ``close()`` writes the last chunk (flagged, possibly empty); a file without it is
    refused on restore as cut short.
    """

    def __init__(self, out: BinaryIO, key: BackupKey) -> None:
        self._out = out
        self._aad = _header_bytes(key.header)
        self._aead = AESGCM(key.key)
        self._prefix = bytes.fromhex(key.header["nonce_prefix"])
        self._chunk = int(key.header["chunk_bytes"])
        self._buffer = bytearray()
        self._counter = 0
        self.closed = False
        out.write(self._aad)

    def write(self, data: bytes) -> int:
        """Buffer ``data``; whole chunks are encrypted and written as they fill.

        A full chunk is kept back until more data follows: the last chunk is only known at
        :meth:`close`.
        """
        view = memoryview(data)
        if self._buffer:
            room = self._chunk - len(self._buffer)
            self._buffer += view[:room]
            view = view[room:]
            if not view:
                return len(data)
            self._emit(bytes(self._buffer), last=False)
            self._buffer.clear()
        while len(view) > self._chunk:
            self._emit(view[: self._chunk], last=False)
            view = view[self._chunk :]
        self._buffer += view
        return len(data)

    def _emit(self, plain: bytes | memoryview, *, last: bool) -> None:
        if self._counter >= 2**32 - 1:
            raise InvalidInput("backup too large for one file", code="backup.too_large")
        sealed = self._aead.encrypt(
            _nonce(self._prefix, self._counter, last=last), plain, self._aad
        )
        self._out.write(struct.pack(">I", len(sealed)) + sealed)
        self._counter += 1

    def close(self) -> None:
        """Write the last chunk."""
        if not self.closed:
            self._emit(bytes(self._buffer), last=True)
            self._buffer.clear()
            self.closed = True


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise VerificationFailed(
            "the backup is cut short", hint=_TAMPERED_HINT, code="backup.truncated"
        )
    return data


def read_header(stream: BinaryIO) -> dict[str, Any]:
    """The header of a backup, checked for shape and bounds (not yet authenticated).

    Raises:
        InvalidInput: Not a TrustFleet backup, another format version, or absurd parameters
            (code ``backup.header``).
    """
    if stream.read(len(MAGIC)) != MAGIC:
        raise InvalidInput("not a TrustFleet backup", hint=_TAMPERED_HINT, code="backup.header")
    (size,) = struct.unpack(">I", _read_exact(stream, 4))
    if size > MAX_HEADER_BYTES:
        raise InvalidInput("backup header too large", hint=_TAMPERED_HINT, code="backup.header")
    try:
        header = json.loads(_read_exact(stream, size))
        _check_header(header)
    except (ValueError, TypeError, KeyError) as exc:
        raise InvalidInput(
            f"malformed backup header ({exc})", hint=_TAMPERED_HINT, code="backup.header"
        ) from exc
    return dict(header)


def _check_header(header: Any) -> None:
    if not isinstance(header, dict) or header.get("format") != FORMAT_VERSION:
        raise ValueError(f"format {header.get('format') if isinstance(header, dict) else '?'}")
    if header["cipher"] != "AES-256-GCM":
        raise ValueError("unknown cipher")
    if not 1 <= int(header["chunk_bytes"]) <= MAX_CHUNK_BYTES:
        raise ValueError("chunk size out of bounds")
    if len(bytes.fromhex(header["nonce_prefix"])) != _PREFIX_BYTES:
        raise ValueError("nonce prefix")
    kdf = header["kdf"]
    if kdf["name"] == "scrypt":
        bytes.fromhex(kdf["salt"])
        if not (10 <= int(kdf["log_n"]) <= _MAX_SCRYPT_LOG_N and 1 <= int(kdf["r"]) <= 16):
            raise ValueError("scrypt cost out of bounds")
        if not 1 <= int(kdf["p"]) <= 4:
            raise ValueError("scrypt cost out of bounds")
    elif kdf["name"] == "x25519":
        if len(bytes.fromhex(kdf["ephemeral"])) != 32:
            raise ValueError("ephemeral key")
    else:
        raise ValueError(f"unknown key derivation {kdf['name']!r}")
    str(header["key_check"])


def _derived(
    header: dict[str, Any], *, passphrase: bytes | None, identity: X25519PrivateKey | None
) -> bytes:
    kdf = header["kdf"]
    if kdf["name"] == "scrypt":
        if passphrase is None:
            raise InvalidInput(
                "this backup is encrypted with a passphrase",
                hint="give --passphrase-file", code="backup.key.kind",
            )  # fmt: skip
        salt = bytes.fromhex(kdf["salt"])
        cost = ScryptCost(int(kdf["log_n"]), int(kdf["r"]), int(kdf["p"]))
        key, check = _hkdf(_scrypt(passphrase, salt=salt, cost=cost), salt=salt, info=b" scrypt")
        wrong = "wrong passphrase"
    else:
        if identity is None:
            raise InvalidInput(
                "this backup is encrypted to a recipient key",
                hint="give --identity with its private key", code="backup.key.kind",
            )  # fmt: skip
        eph = bytes.fromhex(kdf["ephemeral"])
        rcpt = identity.public_key().public_bytes_raw()
        shared = identity.exchange(X25519PublicKey.from_public_bytes(eph))
        key, check = _hkdf(shared, salt=eph + rcpt, info=b" x25519")
        wrong = f"this backup is for another recipient key (key id {kdf.get('recipient', '?')})"
    if not hmac.compare_digest(_check_value(check), str(header["key_check"])):
        raise VerificationFailed(
            wrong, hint="check the passphrase or identity file", code="backup.key.wrong"
        )
    return key


def decrypt_chunks(
    stream: BinaryIO,
    header: dict[str, Any],
    *,
    passphrase: bytes | None = None,
    identity: X25519PrivateKey | None = None,
) -> Iterator[bytes]:
    """The plaintext chunks of a backup whose header :func:`read_header` returned.

    Raises:
        VerificationFailed: Wrong key (``backup.key.wrong``), a chunk changed, dropped or
            moved (``backup.tampered``), or the file cut short (``backup.truncated``).
        InvalidInput: The wrong kind of key was given (``backup.key.kind``).
    """
    aead = AESGCM(_derived(header, passphrase=passphrase, identity=identity))
    aad, prefix = _header_bytes(header), bytes.fromhex(header["nonce_prefix"])
    limit = int(header["chunk_bytes"]) + _TAG_BYTES
    counter, pending = 0, stream.read(4)
    while True:
        if len(pending) != 4:
            raise VerificationFailed(
                "the backup is cut short", hint=_TAMPERED_HINT, code="backup.truncated"
            )
        (size,) = struct.unpack(">I", pending)
        if not _TAG_BYTES <= size <= limit:
            raise VerificationFailed(
                "a backup chunk has an impossible size", hint=_TAMPERED_HINT,
                code="backup.tampered",
            )  # fmt: skip
        sealed = _read_exact(stream, size)
        pending = stream.read(4)
        last = pending == b""  # the last chunk is the one the file ends with
        try:
            plain = aead.decrypt(_nonce(prefix, counter, last=last), sealed, aad)
        except InvalidTag as exc:
            what = "changed or cut short" if last else "changed"
            raise VerificationFailed(
                f"the backup was {what} (chunk {counter} fails authentication)",
                hint=_TAMPERED_HINT, code="backup.tampered",
            ) from exc  # fmt: skip
        yield plain
        if last:
            return
        counter += 1


def load_recipient(data: bytes) -> X25519PublicKey:
    """An X25519 public key from PEM (``openssl pkey -pubout``) or 32 raw bytes in hex.

    Raises:
        InvalidInput: Neither (code ``backup.recipient.invalid``).
    """
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(data)
        else:
            key = X25519PublicKey.from_public_bytes(bytes.fromhex(data.decode().strip()))
    except ValueError as exc:
        raise InvalidInput(
            "the recipient file is not an X25519 public key",
            hint="make one with 'openssl genpkey -algorithm X25519 -out id.pem' and "
            "'openssl pkey -in id.pem -pubout -out id.pub'", code="backup.recipient.invalid",
        ) from exc  # fmt: skip
    if not isinstance(key, X25519PublicKey):
        raise InvalidInput(
            "the recipient key is not X25519", hint="use an X25519 key",
            code="backup.recipient.invalid",
        )  # fmt: skip
    return key


def load_identity(data: bytes) -> X25519PrivateKey:
    """An X25519 private key from PEM (PKCS#8, unencrypted: ``openssl genpkey``).

    Raises:
        InvalidInput: It is not one (code ``backup.identity.invalid``).
    """
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(
            "the identity file is not an unencrypted PEM private key",
            hint="give the X25519 key made by 'openssl genpkey -algorithm X25519'",
            code="backup.identity.invalid",
        ) from exc  # fmt: skip
    if not isinstance(key, X25519PrivateKey):
        raise InvalidInput(
            "the identity key is not X25519", hint="use an X25519 key",
            code="backup.identity.invalid",
        )  # fmt: skip
    return key
