"""TPM2_ActivateCredential in software: the independent inverse of MakeCredential.

Shared by test_credential.py (software EKs marshalled by tpm2-pytss) and test_credential_rules.py
(public areas marshalled by hand). It uses tpm2-pytss's KDFs and cryptography's primitives, so
``trustfleet.attestation.credential`` is checked against another implementation without a TPM;
a real swtpm activates what we make in tests/integration/tpm.
"""

from __future__ import annotations

import hmac
import struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from tpm2_pytss.internal import crypto as pytss_crypto

from trustfleet.attestation.credential import parse_public

try:
    from cryptography.hazmat.decrepit.ciphers.modes import CFB
except ImportError:  # older cryptography
    from cryptography.hazmat.primitives.ciphers.modes import CFB

__all__ = ["software_activate"]

TPM_ALG_SHA256, TPM_ALG_SHA384, TPM_ALG_SHA512 = 0xB, 0xC, 0xD
DIGESTS: dict[int, type[hashes.HashAlgorithm]] = {
    TPM_ALG_SHA256: hashes.SHA256,
    TPM_ALG_SHA384: hashes.SHA384,
    TPM_ALG_SHA512: hashes.SHA512,
}


def _u16(value: int) -> bytes:
    return struct.pack(">H", value)


def _seed(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    seed_enc: bytes,
    *,
    name_alg: int,
    digest: hashes.HashAlgorithm,
) -> bytes:
    """The credential's seed: RSA-OAEP decrypted, or ECDH with the EK and KDFe."""
    if isinstance(key, rsa.RSAPrivateKey):
        oaep = padding.OAEP(mgf=padding.MGF1(digest), algorithm=digest, label=b"IDENTITY\x00")
        return key.decrypt(seed_enc, oaep)
    size = (key.curve.key_size + 7) // 8
    assert seed_enc[:2] == _u16(size) and seed_enc[2 + size : 4 + size] == _u16(size)
    assert len(seed_enc) == 4 + 2 * size
    x, y = seed_enc[2 : 2 + size], seed_enc[4 + size :]
    peer = ec.EllipticCurvePublicNumbers(
        int.from_bytes(x, "big"), int.from_bytes(y, "big"), key.curve
    ).public_key()
    z = key.exchange(ec.ECDH(), peer)
    ek_x = key.public_key().public_numbers().x.to_bytes(size, "big")
    seed: bytes = pytss_crypto.kdfe(name_alg, z, b"IDENTITY\x00", x, ek_x, digest.digest_size * 8)
    return seed


def software_activate(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    ek_public: bytes,
    blob: bytes,
    seed_enc: bytes,
    name: bytes,
) -> bytes:
    """Open a credential with the EK's private key, as TPM2_ActivateCredential does.

    Raises:
        ValueError: the credential's integrity HMAC does not match ``name``.
    """
    ek = parse_public(ek_public)
    digest = DIGESTS[ek.name_alg]()
    seed = _seed(key, seed_enc, name_alg=ek.name_alg, digest=digest)
    assert len(seed) == digest.digest_size
    assert blob[:2] == _u16(digest.digest_size)
    integrity, enc_identity = blob[2 : 2 + digest.digest_size], blob[2 + digest.digest_size :]
    hmac_key = pytss_crypto._kdfa(ek.name_alg, seed, b"INTEGRITY", b"", b"", digest.digest_size * 8)
    expected = hmac.new(hmac_key, enc_identity + name, digest.name).digest()
    if not hmac.compare_digest(expected, integrity):
        raise ValueError("integrity check failed")
    sym_key = pytss_crypto._kdfa(ek.name_alg, seed, b"STORAGE", name, b"", ek.symmetric[1])
    decryptor = Cipher(algorithms.AES(sym_key), CFB(bytes(16))).decryptor()
    plain = decryptor.update(enc_identity) + decryptor.finalize()
    assert plain[:2] == _u16(len(plain) - 2)
    return plain[2:]
