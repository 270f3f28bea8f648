"""Binding an AK to a device's TPM: MakeCredential in software, and AK public-area checks.

The service encrypts a secret so that only the TPM holding the EK can recover it, and only for
the key whose TPM name it was made for (TPM 2.0 Part 1 §24, Part 3 TPM2_MakeCredential):

* a seed is encrypted to the EK: RSA-OAEP with the EK's name algorithm and the label
  ``"IDENTITY\\0"``, or for an ECC EK an ephemeral ECDH whose shared x-coordinate goes through
  KDFe (label ``"IDENTITY"``);
* ``KDFa(seed, "STORAGE", name)`` keys AES-CFB over the ``TPM2B_DIGEST`` of the secret, and
  ``KDFa(seed, "INTEGRITY")`` keys an HMAC over the ciphertext and the name.

Pure ``cryptography``, no TSS: the service never loads the native tpm2-tss libraries and
parses the (bounded) public areas itself. Public areas travel as marshalled ``TPM2B_PUBLIC``
(what ``TPM2_ReadPublic`` and ``tpm2_readpublic -o`` give).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

try:  # AES-CFB moved to "decrepit" in cryptography 47; the TPM still uses it
    from cryptography.hazmat.decrepit.ciphers.modes import CFB
except ImportError:  # pragma: no cover - older cryptography
    from cryptography.hazmat.primitives.ciphers.modes import CFB

from trustfleet.errors import InvalidInput, VerificationFailed

__all__ = [
    "MAX_PUBLIC_BYTES",
    "TpmPublic",
    "ak_name_matches",
    "kdfa",
    "make_credential",
    "parse_public",
    "public_key",
    "tpm_name",
]

MAX_PUBLIC_BYTES = 1024
"""The largest ``TPM2B_PUBLIC`` accepted (an RSA 4096 key's public area is about 600 bytes)."""

ALG_RSA, ALG_SHA1, ALG_AES = 0x0001, 0x0004, 0x0006
ALG_SHA256, ALG_SHA384, ALG_SHA512, ALG_NULL = 0x000B, 0x000C, 0x000D, 0x0010
ALG_ECDSA, ALG_ECDAA, ALG_ECC, ALG_CFB = 0x0018, 0x001A, 0x0023, 0x0043
_HASHES: dict[int, type[hashes.HashAlgorithm]] = {
    ALG_SHA1: hashes.SHA1,
    ALG_SHA256: hashes.SHA256,
    ALG_SHA384: hashes.SHA384,
    ALG_SHA512: hashes.SHA512,
}
_CURVES: dict[int, type[ec.EllipticCurve]] = {
    0x0003: ec.SECP256R1,
    0x0004: ec.SECP384R1,
    0x0005: ec.SECP521R1,
}
# TPMA_OBJECT bits
FIXED_TPM, FIXED_PARENT, RESTRICTED = 1 << 1, 1 << 4, 1 << 16
DECRYPT, SIGN = 1 << 17, 1 << 18
_IDENTITY = b"IDENTITY\x00"


@dataclass(frozen=True)
class TpmPublic:
    """The fields of a parsed ``TPMT_PUBLIC`` that the service uses.

    Attributes:
        area: The marshalled ``TPMT_PUBLIC`` (what the name is computed over).
        type: ``TPM_ALG_RSA`` or ``TPM_ALG_ECC``.
        name_alg: The name algorithm.
        attributes: ``TPMA_OBJECT`` bits.
        symmetric: ``(algorithm, key bits, mode)`` of a storage key, or ``(TPM_ALG_NULL, 0, 0)``.
        scheme: ``(scheme, hash)``, e.g. ``(TPM_ALG_ECDSA, TPM_ALG_SHA256)``.
        curve: The TPM curve id (ECC) or 0.
        rsa_bits: The modulus size (RSA) or 0.
        rsa_exponent: The public exponent (RSA) or 0.
        unique: RSA: the modulus; ECC: ``(x, y)`` concatenated, each as stored.
        ecc_x: ECC x coordinate bytes (empty for RSA).
        ecc_y: ECC y coordinate bytes (empty for RSA).
    """

    area: bytes
    type: int
    name_alg: int
    attributes: int
    symmetric: tuple[int, int, int]
    scheme: tuple[int, int]
    curve: int
    rsa_bits: int
    rsa_exponent: int
    unique: bytes
    ecc_x: bytes = b""
    ecc_y: bytes = b""


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, count: int) -> bytes:
        if self.pos + count > len(self.data):
            raise InvalidInput("the TPM public area is truncated", code="attestation.tpm.public")
        out = self.data[self.pos : self.pos + count]
        self.pos += count
        return out

    def u16(self) -> int:
        value: int = struct.unpack(">H", self.take(2))[0]
        return value

    def u32(self) -> int:
        value: int = struct.unpack(">I", self.take(4))[0]
        return value

    def tpm2b(self) -> bytes:
        return self.take(self.u16())


def _scheme(reader: _Reader) -> tuple[int, int]:
    scheme = reader.u16()
    if scheme == ALG_NULL:
        return scheme, ALG_NULL
    hash_alg = reader.u16()
    if scheme == ALG_ECDAA:
        reader.u16()  # count
    return scheme, hash_alg


def parse_public(data: bytes) -> TpmPublic:
    """Parse a marshalled ``TPM2B_PUBLIC`` of an RSA or ECC key.

    Raises:
        InvalidInput: The bytes are too large, truncated, trailing, or not an RSA/ECC key
            (code ``attestation.tpm.public``).
    """
    if not isinstance(data, bytes) or len(data) > MAX_PUBLIC_BYTES:
        raise InvalidInput(
            f"a TPM2B_PUBLIC must be bytes, at most {MAX_PUBLIC_BYTES}",
            code="attestation.tpm.public",
        )
    outer = _Reader(data)
    area = outer.tpm2b()
    if outer.pos != len(data):
        raise InvalidInput("the TPM2B_PUBLIC has trailing bytes", code="attestation.tpm.public")
    reader = _Reader(area)
    kind, name_alg, attributes = reader.u16(), reader.u16(), reader.u32()
    reader.tpm2b()  # authPolicy
    if kind not in (ALG_RSA, ALG_ECC):
        raise InvalidInput("only RSA and ECC keys are supported", code="attestation.tpm.public")
    sym_alg = reader.u16()
    symmetric = (sym_alg, 0, 0) if sym_alg == ALG_NULL else (sym_alg, reader.u16(), reader.u16())
    scheme = _scheme(reader)
    curve = bits = exponent = 0
    x = y = b""
    if kind == ALG_RSA:
        bits, exponent = reader.u16(), reader.u32() or 65537
        unique = reader.tpm2b()
    else:
        curve = reader.u16()
        if reader.u16() != ALG_NULL:  # kdf scheme
            reader.u16()
        x, y = reader.tpm2b(), reader.tpm2b()
        unique = x + y
    if reader.pos != len(area):
        raise InvalidInput("the TPMT_PUBLIC has trailing bytes", code="attestation.tpm.public")
    return TpmPublic(
        area=area, type=kind, name_alg=name_alg, attributes=attributes, symmetric=symmetric,
        scheme=scheme, curve=curve, rsa_bits=bits, rsa_exponent=exponent, unique=unique,
        ecc_x=x, ecc_y=y,
    )  # fmt: skip


def _hash(alg: int) -> hashes.HashAlgorithm:
    cls = _HASHES.get(alg)
    if cls is None:
        raise InvalidInput(
            f"unsupported TPM hash algorithm 0x{alg:04x}", code="attestation.tpm.hash"
        )
    return cls()


def tpm_name(public: TpmPublic) -> bytes:
    """The TPM name: ``nameAlg ‖ H_nameAlg(TPMT_PUBLIC)``."""
    digest = hashlib.new(_hash(public.name_alg).name, public.area).digest()
    return struct.pack(">H", public.name_alg) + digest


def public_key(public: TpmPublic) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    """The ``cryptography`` public key of a parsed public area.

    Raises:
        InvalidInput: The curve is not supported or the point/modulus is invalid.
    """
    try:
        if public.type == ALG_RSA:
            modulus = int.from_bytes(public.unique, "big")
            return rsa.RSAPublicNumbers(public.rsa_exponent, modulus).public_key()
        curve = _CURVES.get(public.curve)
        if curve is None:
            raise InvalidInput(
                f"unsupported TPM curve 0x{public.curve:04x}", code="attestation.tpm.public"
            )
        x, y = int.from_bytes(public.ecc_x, "big"), int.from_bytes(public.ecc_y, "big")
        return ec.EllipticCurvePublicNumbers(x, y, curve()).public_key()
    except ValueError as exc:
        raise InvalidInput("the TPM public key is invalid", code="attestation.tpm.public") from exc


def ak_name_matches(ak_public: bytes, ak_name: bytes) -> bool:
    """Whether ``ak_name`` is the TPM name of ``ak_public``, which must be a proper AK.

    An AK must be a restricted signing key that cannot leave its TPM (fixedTPM, fixedParent,
    restricted, sign, not decrypt), ECC P-256 with ECDSA/SHA-256 (docs/attestation.md).

    Args:
        ak_public: The AK's marshalled ``TPM2B_PUBLIC``.
        ak_name: The name the device claims for it.

    Returns:
        True when the name is that public area's name.

    Raises:
        InvalidInput: ``ak_public`` is malformed.
        VerificationFailed: The key's attributes (``attestation.ak.attributes``) or algorithm
            (``attestation.ak.algorithm``) are not those of an AK.
    """
    public = parse_public(ak_public)
    required = FIXED_TPM | FIXED_PARENT | RESTRICTED | SIGN
    if public.attributes & required != required or public.attributes & DECRYPT:
        raise VerificationFailed(
            "the attestation key is not a restricted signing key bound to its TPM",
            hint="create the AK with fixedTPM, fixedParent, restricted and sign set",
            code="attestation.ak.attributes",
        )
    if (public.type, public.curve, public.scheme, public.name_alg) != (
        ALG_ECC, 0x0003, (ALG_ECDSA, ALG_SHA256), ALG_SHA256,
    ):  # fmt: skip
        raise VerificationFailed(
            "the attestation key is not ECC P-256 with ECDSA/SHA-256",
            code="attestation.ak.algorithm",
        )
    return hmac.compare_digest(tpm_name(public), ak_name)


def kdfa(
    alg: int, key: bytes, *, label: bytes, context_u: bytes, context_v: bytes, bits: int
) -> bytes:
    """KDFa (TPM 2.0 Part 1 §11.4.10.2): SP 800-108 counter mode with HMAC.

    ``label`` is given without its terminating zero (it is appended here).
    """
    digest = _hash(alg)
    size = (bits + 7) // 8
    out = b""
    counter = 0
    while len(out) < size:
        counter += 1
        data = struct.pack(">I", counter) + label + b"\x00" + context_u + context_v
        out += hmac.new(key, data + struct.pack(">I", bits), digest.name).digest()[
            : size - len(out)
        ]
    return out


def _kdfe(alg: int, z: bytes, *, label: bytes, party_u: bytes, party_v: bytes, bits: int) -> bytes:
    """KDFe (Part 1 §11.4.10.3): SP 800-56A concatenation KDF with the name algorithm."""
    name = _hash(alg).name
    size = (bits + 7) // 8
    out = b""
    counter = 0
    while len(out) < size:
        counter += 1
        data = struct.pack(">I", counter) + z + label + b"\x00" + party_u + party_v
        out += hashlib.new(name, data).digest()[: size - len(out)]
    return out


def _seed(ek: TpmPublic) -> tuple[bytes, bytes]:
    """A fresh seed and its encryption to the EK (the ``TPM2B_ENCRYPTED_SECRET`` contents)."""
    digest = _hash(ek.name_alg)
    key = public_key(ek)
    if isinstance(key, rsa.RSAPublicKey):
        seed = os.urandom(digest.digest_size)
        oaep = padding.OAEP(mgf=padding.MGF1(_hash(ek.name_alg)), algorithm=digest, label=_IDENTITY)
        return seed, key.encrypt(seed, oaep)
    size = (key.curve.key_size + 7) // 8
    ephemeral = ec.generate_private_key(key.curve)
    z = ephemeral.exchange(ec.ECDH(), key)
    numbers = ephemeral.public_key().public_numbers()
    eph_x, eph_y = numbers.x.to_bytes(size, "big"), numbers.y.to_bytes(size, "big")
    ek_x = ek.ecc_x.rjust(size, b"\x00")
    seed = _kdfe(
        ek.name_alg, z, label=_IDENTITY[:-1], party_u=eph_x, party_v=ek_x,
        bits=digest.digest_size * 8,
    )  # fmt: skip
    point = struct.pack(">H", size) + eph_x + struct.pack(">H", size) + eph_y
    return seed, point


def make_credential(*, ek_public: bytes, ak_name: bytes, secret: bytes) -> tuple[bytes, bytes]:
    """TPM2_MakeCredential in software: bind ``secret`` to the EK's TPM and the AK's name.

    Args:
        ek_public: The device EK's marshalled ``TPM2B_PUBLIC`` (restricted decryption key with
            an AES-CFB symmetric definition, as every TCG EK template has). Check it against
            the EK certificate first (``ekcert.check_ek_certificate``).
        ak_name: The AK's TPM name (check it with :func:`ak_name_matches`).
        secret: The credential, 1 byte to the EK name algorithm's digest size.

    Returns:
        ``(credential_blob, encrypted_secret)``: the contents of the ``TPM2B_ID_OBJECT``
        (``TPM2B_DIGEST`` integrity HMAC ‖ encrypted credential) and of the
        ``TPM2B_ENCRYPTED_SECRET``, as ``Tpm.activate_credential`` takes them.

    Raises:
        InvalidInput: A public area, the name or the secret is malformed
            (codes ``attestation.tpm.public``, ``attestation.credential.*``).
        VerificationFailed: The EK is not a restricted decryption key
            (``attestation.ek.attributes``).
    """
    ek = parse_public(ek_public)
    if ek.attributes & (RESTRICTED | DECRYPT) != RESTRICTED | DECRYPT or ek.attributes & SIGN:
        raise VerificationFailed(
            "the EK is not a restricted decryption key",
            hint="pass the EK's public area, not another key's",
            code="attestation.ek.attributes",
        )
    sym_alg, sym_bits, sym_mode = ek.symmetric
    if sym_alg != ALG_AES or sym_mode != ALG_CFB or sym_bits not in (128, 192, 256):
        raise InvalidInput(
            "the EK's symmetric definition is not AES-CFB", code="attestation.tpm.public"
        )
    digest_size = _hash(ek.name_alg).digest_size
    if not 1 <= len(secret) <= digest_size:
        raise InvalidInput(
            f"the credential secret must be 1 to {digest_size} bytes",
            code="attestation.credential.secret",
        )
    name_alg = int.from_bytes(ak_name[:2], "big")
    if name_alg not in _HASHES or len(ak_name) != 2 + _hash(name_alg).digest_size:
        raise InvalidInput(
            "the AK name is not a TPM name (a hash algorithm and a digest of its size)",
            code="attestation.credential.name",
        )
    seed, encrypted_seed = _seed(ek)
    sym_key = kdfa(
        ek.name_alg, seed, label=b"STORAGE", context_u=ak_name, context_v=b"", bits=sym_bits
    )
    encryptor = Cipher(algorithms.AES(sym_key), CFB(bytes(16))).encryptor()
    enc_identity = encryptor.update(struct.pack(">H", len(secret)) + secret) + encryptor.finalize()
    hmac_key = kdfa(
        ek.name_alg, seed, label=b"INTEGRITY", context_u=b"", context_v=b"", bits=digest_size * 8
    )
    integrity = hmac.new(hmac_key, enc_identity + ak_name, _hash(ek.name_alg).name).digest()
    blob = struct.pack(">H", len(integrity)) + integrity + enc_identity
    return blob, encrypted_seed
