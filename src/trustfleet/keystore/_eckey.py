"""An EC private key that lives in a PKCS#11 token and signs for ``cryptography``."""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn, Protocol

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.utils import Buffer

from trustfleet.errors import Config, InvalidInput
from trustfleet.keystore._tokenkey import TokenKey

if TYPE_CHECKING:
    from pkcs11.types import SignMixin


class _Signer(Protocol):
    """What a key needs from the session that holds it (implemented by TokenSession)."""

    def _sign_digest(self, key: SignMixin, digest: bytes, *, label: str) -> bytes: ...

    def close(self) -> None: ...


def _non_extractable(label: str) -> NoReturn:
    raise Config(
        f"key '{label}' is non-extractable and lives in the token",
        hint="use the key through sign(); export is impossible by design",
        code="keystore.key.non_extractable",
    )


class Pkcs11EcPrivateKey(TokenKey[_Signer, ec.EllipticCurvePublicKey], ec.EllipticCurvePrivateKey):
    """An EC private key in a PKCS#11 token, usable wherever ``cryptography`` wants one to sign.

    The hash is computed in Python; the token computes ``CKM_ECDSA`` over the digest. The key
    cannot be exported or used for ECDH. Signing is thread-safe (the session serialises it).

    Do not construct directly: use :meth:`TokenSession.generate_ec_key`,
    :meth:`TokenSession.ec_private_key` or :func:`open_key`.
    """

    @property
    def curve(self) -> ec.EllipticCurve:
        """The key's curve."""
        return self._public_key.curve

    @property
    def key_size(self) -> int:
        """The curve's size in bits."""
        return self._public_key.curve.key_size

    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The public key (read from the token once, when the key was opened)."""
        return self._public_key

    def sign(
        self,
        data: Buffer,
        signature_algorithm: ec.EllipticCurveSignatureAlgorithm,
    ) -> bytes:
        """Sign ``data`` with ECDSA inside the token.

        Args:
            data: The message, or its digest when the algorithm's hash is ``Prehashed``.
            signature_algorithm: ``ec.ECDSA(hash)``.

        Returns:
            The DER-encoded ECDSA signature.

        Raises:
            InvalidInput: Not ECDSA, deterministic signing requested, or a bad digest length.
            Unavailable: The session is closed or the token failed.
        """
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise InvalidInput("PKCS#11 EC keys sign with ECDSA only")
        if signature_algorithm.deterministic_signing:
            raise InvalidInput("deterministic ECDSA is not available through PKCS#11")
        algorithm = signature_algorithm.algorithm
        if isinstance(algorithm, utils.Prehashed):
            digest = bytes(data)
            if len(digest) != algorithm.digest_size:
                raise InvalidInput(
                    f"prehashed digest is {len(digest)} bytes, expected {algorithm.digest_size}"
                )
        else:
            hasher = hashes.Hash(algorithm)
            hasher.update(data)
            digest = hasher.finalize()
        raw = self._signer._sign_digest(self._handle, digest, label=self._label)
        half = len(raw) // 2
        r = int.from_bytes(raw[:half], "big")
        s = int.from_bytes(raw[half:], "big")
        return utils.encode_dss_signature(r, s)

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        """Not supported: the key is generated for signing only."""
        raise InvalidInput(
            f"key '{self._label}' is a signing key in the token; ECDH is not allowed",
            code="keystore.key.usage",
        )

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        """Not possible: the key is non-extractable."""
        _non_extractable(self._label)

    def private_bytes(
        self,
        encoding: serialization.Encoding,
        format: serialization.PrivateFormat,
        encryption_algorithm: serialization.KeySerializationEncryption,
    ) -> bytes:
        """Not possible: the key is non-extractable."""
        _non_extractable(self._label)

    def __copy__(self) -> Pkcs11EcPrivateKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Pkcs11EcPrivateKey:
        return self
