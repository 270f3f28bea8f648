"""EC keys in a real SoftHSM2 token: attributes, signatures, lookup, export refusal."""

from __future__ import annotations

import copy
import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from keystore_support import USER_PIN
from pkcs11 import Attribute, ObjectClass
from pkcs11.exceptions import AttributeSensitive

from trustfleet.errors import Config, Conflict, InvalidInput, NotFound, Unavailable
from trustfleet.keystore import Pkcs11EcPrivateKey, Pkcs11Uri, TokenSession, open_token

pytestmark = pytest.mark.integration


def test_key_attributes_read_back(token: TokenSession) -> None:
    key = token.generate_ec_key("identity")
    private = key._handle  # test reaches into the adapter to read raw PKCS#11 attributes
    attrs = private.get_attributes(
        [
            Attribute.TOKEN,
            Attribute.PRIVATE,
            Attribute.SENSITIVE,
            Attribute.EXTRACTABLE,
            Attribute.ALWAYS_SENSITIVE,
            Attribute.NEVER_EXTRACTABLE,
            Attribute.SIGN,
            Attribute.ID,
        ]
    )
    assert attrs[Attribute.TOKEN] is True
    assert attrs[Attribute.PRIVATE] is True
    assert attrs[Attribute.SENSITIVE] is True
    assert attrs[Attribute.EXTRACTABLE] is False
    assert attrs[Attribute.ALWAYS_SENSITIVE] is True
    assert attrs[Attribute.NEVER_EXTRACTABLE] is True
    assert attrs[Attribute.SIGN] is True
    assert len(attrs[Attribute.ID]) == 16
    public = token._session.get_key(object_class=ObjectClass.PUBLIC_KEY, id=key.key_id)
    assert public[Attribute.VERIFY] is True
    assert public[Attribute.TOKEN] is True
    assert public[Attribute.ID] == attrs[Attribute.ID] == key.key_id


def test_export_is_refused(token: TokenSession) -> None:
    key = token.generate_ec_key("identity")
    with pytest.raises(Config, match="non-extractable"):
        key.private_numbers()
    with pytest.raises(Config, match="non-extractable"):
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    with pytest.raises(InvalidInput):
        key.exchange(ec.ECDH(), ec.generate_private_key(ec.SECP256R1()).public_key())
    with pytest.raises(AttributeSensitive):  # the token itself refuses to reveal CKA_VALUE
        key._handle[Attribute.VALUE]


@pytest.mark.parametrize(
    ("curve", "curve_type", "hash_algorithm"),
    [
        ("P-256", ec.SECP256R1, hashes.SHA256()),
        ("P-384", ec.SECP384R1, hashes.SHA384()),
        ("P-256", ec.SECP256R1, hashes.SHA512()),
    ],
    ids=["p256-sha256", "p384-sha384", "p256-sha512"],
)
def test_signatures_verify(
    token: TokenSession,
    curve: str,
    curve_type: type[ec.EllipticCurve],
    hash_algorithm: hashes.HashAlgorithm,
) -> None:
    key = token.generate_ec_key(f"key-{curve}", curve=curve)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, curve_type)
    assert key.key_size == curve_type.key_size
    message = b"firmware image 1.2.3"
    signature = key.sign(message, ec.ECDSA(hash_algorithm))
    key.public_key().verify(signature, message, ec.ECDSA(hash_algorithm))
    assert key.sign(message, ec.ECDSA(hash_algorithm)) != signature  # randomised ECDSA


def test_prehashed_signature(token: TokenSession) -> None:
    key = token.generate_ec_key("prehashed")
    digest = hashlib.sha256(b"data").digest()
    signature = key.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    key.public_key().verify(signature, b"data", ec.ECDSA(hashes.SHA256()))
    with pytest.raises(InvalidInput, match="prehashed digest"):
        key.sign(digest[:-1], ec.ECDSA(utils.Prehashed(hashes.SHA256())))


def test_lookup_by_label_id_and_uri(token: TokenSession) -> None:
    key = token.generate_ec_key("device-ca", curve="P-384", key_id=b"\x01\x02")
    assert key.uri == Pkcs11Uri(token="server", object="device-ca", id=b"\x01\x02", type="private")
    for found in (
        token.ec_private_key(label="device-ca"),
        token.ec_private_key(key_id=b"\x01\x02"),
        token.key_from_uri(Pkcs11Uri.parse(str(key.uri))),
    ):
        assert found.label == "device-ca"
        assert found.public_key() == key.public_key()
        signature = found.sign(b"m", ec.ECDSA(hashes.SHA384()))
        key.public_key().verify(signature, b"m", ec.ECDSA(hashes.SHA384()))


def test_missing_key_and_bad_uri(token: TokenSession) -> None:
    with pytest.raises(NotFound, match="absent"):
        token.ec_private_key(label="absent")
    with pytest.raises(InvalidInput):
        token.ec_private_key()
    with pytest.raises(InvalidInput, match="names token 'other'"):
        token.key_from_uri(Pkcs11Uri(token="other", object="x"))
    with pytest.raises(InvalidInput, match="'cert' object"):
        token.key_from_uri(Pkcs11Uri(token="server", object="x", type="cert"))


def test_duplicate_label_or_id_conflicts(token: TokenSession) -> None:
    token.generate_ec_key("identity", key_id=b"\xaa")
    with pytest.raises(Conflict, match="identity"):
        token.generate_ec_key("identity")
    with pytest.raises(Conflict, match="id"):
        token.generate_ec_key("other", key_id=b"\xaa")
    with pytest.raises(InvalidInput, match="curve"):
        token.generate_ec_key("x", curve="P-521")


def test_concurrent_signing_is_safe(token: TokenSession) -> None:
    key = token.generate_ec_key("busy")
    messages = [f"message {i}".encode() for i in range(200)]

    def sign(message: bytes) -> bytes:
        return key.sign(message, ec.ECDSA(hashes.SHA256()))

    with ThreadPoolExecutor(max_workers=8) as pool:
        signatures = list(pool.map(sign, messages))
    for message, signature in zip(messages, signatures, strict=True):
        key.public_key().verify(signature, message, ec.ECDSA(hashes.SHA256()))


def test_concurrent_signing_on_several_sessions_is_safe(
    token: TokenSession, module: Path, conf: Path
) -> None:
    """Regression: python-pkcs11 initialises the module with C_Initialize(NULL), which tells
    SoftHSM2 that no two threads call it at once (it then takes no locks of its own). Two
    runtimes of one process (a session each) signing at once got CKR_GENERAL_ERROR; every
    session of a module now shares one lock."""
    token.generate_ec_key("shared")
    sessions = [
        open_token(module=module, label="server", pin=USER_PIN, conf=conf) for _ in range(6)
    ]
    try:
        keys = [s.ec_private_key(label="shared") for s in sessions]
        barrier = threading.Barrier(len(keys))

        def sign_many(key: Pkcs11EcPrivateKey) -> list[tuple[bytes, bytes]]:
            barrier.wait()
            out = []
            for i in range(60):
                message = f"{id(key)} {i}".encode()
                out.append((message, key.sign(message, ec.ECDSA(hashes.SHA256()))))
            return out

        with ThreadPoolExecutor(max_workers=len(keys)) as pool:
            results = list(pool.map(sign_many, keys))
        public = keys[0].public_key()
        for message, signature in (pair for signed in results for pair in signed):
            public.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    finally:
        for session in sessions:
            session.close()


def test_copy_returns_same_key_and_closed_session_refuses(token: TokenSession) -> None:
    key = token.generate_ec_key("copyable")
    assert copy.copy(key) is key
    assert copy.deepcopy(key) is key
    assert isinstance(key, Pkcs11EcPrivateKey)
    assert "copyable" in repr(key)
    token.close()
    assert token.closed
    with pytest.raises(Unavailable, match="closed"):
        key.sign(b"m", ec.ECDSA(hashes.SHA256()))
    token.close()  # idempotent
