"""Ed25519 keys in a real SoftHSM2 token: attributes, signatures, lookup, notes signed with them."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from keystore_support import USER_PIN
from pkcs11 import Attribute, KeyType, ObjectClass
from pkcs11.exceptions import AttributeSensitive

from trustfleet.audit import (
    COSIGNATURE_V1,
    ED25519,
    Checkpoint,
    Verifier,
    cosign,
    format_note,
    parse_note,
    sign_note,
    verify_note,
    with_signatures,
)
from trustfleet.errors import Conflict, InvalidInput, NotFound, PermissionDenied, Unavailable
from trustfleet.keystore import Pkcs11Ed25519Key, Pkcs11Uri, TokenSession, open_ed25519_key

pytestmark = pytest.mark.integration


def test_key_attributes_read_back(token: TokenSession) -> None:
    key = token.generate_ed25519_key("log")
    private = key._handle  # test reaches into the adapter to read raw PKCS#11 attributes
    expected = {
        Attribute.KEY_TYPE: KeyType.EC_EDWARDS,
        Attribute.ID: key.key_id,
        **dict.fromkeys([Attribute.TOKEN, Attribute.PRIVATE, Attribute.SIGN], True),
        **dict.fromkeys([Attribute.SENSITIVE, Attribute.ALWAYS_SENSITIVE], True),
        **dict.fromkeys([Attribute.NEVER_EXTRACTABLE], True),
        **dict.fromkeys([Attribute.EXTRACTABLE, Attribute.DERIVE, Attribute.DECRYPT], False),
    }
    assert private.get_attributes(list(expected)) == expected
    assert len(key.key_id) == 16
    with pytest.raises(AttributeSensitive):  # the token itself refuses to reveal CKA_VALUE
        private[Attribute.VALUE]
    public = token._session.get_key(object_class=ObjectClass.PUBLIC_KEY, id=key.key_id)
    assert public[Attribute.EC_PARAMS] == bytes.fromhex("06032b6570")  # OID 1.3.101.112
    assert public[Attribute.EC_POINT] == b"\x04\x20" + key.public_bytes_raw()
    assert isinstance(key, Pkcs11Ed25519Key)
    assert "log" in repr(key)


def test_signatures_verify_with_cryptography(token: TokenSession) -> None:
    key = token.generate_ed25519_key("log")
    public = Ed25519PublicKey.from_public_bytes(key.public_bytes_raw())
    for message in (b"", b"m", bytes(range(256)) * 40):
        signature = key.sign(message)
        assert len(signature) == 64
        public.verify(signature, message)
        assert key.sign(message) == signature  # Ed25519 is deterministic


def test_a_note_and_a_cosignature_signed_in_the_token_verify(token: TokenSession) -> None:
    log = token.generate_ed25519_key("log")
    witness = token.generate_ed25519_key("witness")
    checkpoint = Checkpoint("trustfleet.example/audit", 3, bytes(range(32)))
    note = sign_note(checkpoint.text(), name=checkpoint.origin, signer=log)
    cosignature = cosign(
        checkpoint.text(), name="witness.example/w1", signer=witness, timestamp_s=1_700_000_000
    )
    parsed = parse_note(format_note(with_signatures(note, [cosignature])))
    log_verifier = Verifier(checkpoint.origin, ED25519, log.public_bytes_raw())
    witness_verifier = Verifier("witness.example/w1", COSIGNATURE_V1, witness.public_bytes_raw())
    verified = verify_note(parsed, verifiers=[log_verifier, witness_verifier])
    assert verified == [log_verifier, witness_verifier]


def test_lookup_by_label_id_and_uri(module: Path, conf: Path, token: TokenSession) -> None:
    key = token.generate_ed25519_key("log", key_id=b"\x01\x02")
    assert key.uri == Pkcs11Uri(token="server", object="log", id=b"\x01\x02", type="private")
    public = Ed25519PublicKey.from_public_bytes(key.public_bytes_raw())
    for found in (token.ed25519_key("log"), token.ed25519_key(key_id=b"\x01\x02")):
        assert found.label == "log"
        assert found.public_bytes_raw() == key.public_bytes_raw()
        public.verify(found.sign(b"m"), b"m")
    uri = f"{key.uri}?module-path={module}"
    with open_ed25519_key(uri, pin=USER_PIN, conf=conf) as opened:
        assert opened.public_bytes_raw() == key.public_bytes_raw()
        public.verify(opened.sign(b"m"), b"m")
    # open_ed25519_key closed its own session; the fixture's session is still fine.
    public.verify(key.sign(b"m"), b"m")


def test_ec_and_ed25519_lookups_do_not_mix(token: TokenSession) -> None:
    token.generate_ec_key("ecdsa")
    token.generate_ed25519_key("eddsa")
    with pytest.raises(NotFound, match="no Ed25519 key pair with label 'ecdsa'"):
        token.ed25519_key("ecdsa")
    with pytest.raises(NotFound, match="no EC key pair with label 'eddsa'"):
        token.ec_private_key(label="eddsa")


def test_wrong_label_uri_and_pin(module: Path, conf: Path, token: TokenSession) -> None:
    key = token.generate_ed25519_key("log")
    with pytest.raises(NotFound, match="absent"):
        token.ed25519_key("absent")
    with pytest.raises(InvalidInput, match="by label or id"):
        token.ed25519_key()
    with pytest.raises(Conflict, match="log"):
        token.generate_ed25519_key("log")
    with pytest.raises(InvalidInput, match="a key label"):
        token.generate_ed25519_key("")
    with pytest.raises(NotFound, match="absent"):
        open_ed25519_key("pkcs11:token=server;object=absent", pin=USER_PIN, module=module)
    with pytest.raises(NotFound, match="no PKCS#11 token labelled 'absent'"):
        open_ed25519_key("pkcs11:token=absent;object=log", pin=USER_PIN, module=module, conf=conf)
    with pytest.raises(InvalidInput, match="name the token"):
        open_ed25519_key("pkcs11:object=log", pin=USER_PIN, module=module, conf=conf)
    with pytest.raises(PermissionDenied, match="token login failed"):
        open_ed25519_key(key.uri, pin="wrong-PIN-0001", module=module, conf=conf)


def test_closed_session_refuses_to_sign(token: TokenSession) -> None:
    key = token.generate_ed25519_key("log")
    token.close()
    with pytest.raises(Unavailable, match="closed"):
        key.sign(b"m")
    key.close()  # the key does not own the session: nothing to do
