"""C2SP signed notes and cosignatures: spec and Go (golang.org/x/mod/sumdb/note) vectors, round
trips, every malformation refused with its reason, signature failures, unknown keys ignored."""

from __future__ import annotations

import base64
import hashlib
import re
import string

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from trustfleet.audit import (
    COSIGNATURE_V1,
    ED25519,
    MAX_NOTE_BYTES,
    MAX_SIGNATURES,
    Note,
    NoteError,
    NoteSignature,
    Verifier,
    cosign,
    cosignature_time,
    format_note,
    key_id,
    parse_note,
    parse_verifier_key,
    sign_note,
    verifier_key,
    verify_note,
    with_signatures,
)
from trustfleet.errors import InvalidInput

# golang.org/x/mod/sumdb/note: note.go's package doc and note_test.go.
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngot"
    "pRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox"
    "33WWd1RvMc+QQ=\n"
)
# c2sp.org/signed-note, "Example".
FOO_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
FOO_NOTE = (
    "This is an example message.\n\n— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONnc"
    "AlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
)
# c2sp.org/tlog-cosignature, the example checkpoint with a witness cosignature.
SOFA_TEXT = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
SOFA_NOTE = (
    SOFA_TEXT
    + "\n— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/"
    "Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
    "— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2"
    "oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n"
)


class SeedSigner:
    """A RawSigner over an in-memory Ed25519 key (the token key is tested in integration)."""

    def __init__(self, seed: bytes) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(seed)

    def public_bytes_raw(self) -> bytes:
        return self._key.public_key().public_bytes_raw()

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


def peter_signer() -> SeedSigner:
    raw = base64.b64decode(PETER_SKEY.split("+", 4)[4])
    assert raw[0] == ED25519
    return SeedSigner(raw[1:])


PETER = parse_verifier_key(PETER_VKEY)
ENOCH = parse_verifier_key(ENOCH_VKEY)
WITNESS = SeedSigner(bytes(range(32)))
WITNESS_V = Verifier("witness.example/w1", COSIGNATURE_V1, WITNESS.public_bytes_raw())


def test_go_note_verifies_with_the_known_keys() -> None:
    note = parse_note((TEXT + "\n" + PETER_SIG + ENOCH_SIG).encode())
    assert note.text == TEXT
    assert [s.name for s in note.signatures] == ["PeterNeumann", "EnochRoot"]
    assert note.signatures[0].key_id == bytes.fromhex("c74f20a3")
    assert verify_note(note, verifiers=[PETER]) == [PETER]
    assert verify_note(note, verifiers=[ENOCH, PETER]) == [ENOCH, PETER]
    with pytest.raises(NoteError, match="no signature by a known key"):
        verify_note(note, verifiers=[])


def test_go_signing_vector_is_reproduced_byte_for_byte() -> None:
    note = sign_note(TEXT, name="PeterNeumann", signer=peter_signer())
    assert format_note(note) == (TEXT + "\n" + PETER_SIG).encode()


def test_c2sp_example_note_verifies() -> None:
    foo = parse_verifier_key(FOO_VKEY)
    assert verify_note(parse_note(FOO_NOTE.encode()), verifiers=[foo]) == [foo]


@pytest.mark.parametrize("vkey", [PETER_VKEY, ENOCH_VKEY, FOO_VKEY])
def test_vkeys_round_trip(vkey: str) -> None:
    verifier = parse_verifier_key(vkey)
    assert verifier.key_type == ED25519
    assert verifier_key(verifier.name, verifier.key_type, verifier.public_key) == vkey
    assert verifier.vkey() == vkey
    assert verifier.key_id.hex() == vkey.split("+")[1]


def test_key_id_is_the_spec_hash() -> None:
    public_key = bytes(range(32))
    expected = hashlib.sha256(b"log.example\n\x04" + public_key).digest()[:4]
    assert key_id("log.example", COSIGNATURE_V1, public_key) == expected
    assert key_id("log.example", ED25519, public_key) != expected


def _vkey(key_type: int, public_key: bytes) -> str:
    encoded = base64.b64encode(bytes([key_type]) + public_key).decode()
    return f"x+{key_id('x', key_type, public_key).hex()}+{encoded}"


_KEY64 = PETER_VKEY.split("+", 2)[2]
BAD_VKEYS = {
    "no-parts": ("PeterNeumann", "not name+keyid+key"),
    "two-parts": ("PeterNeumann+c74f20a3", "not name+keyid+key"),
    "short-id": (f"PeterNeumann+c74f20a+{_KEY64}", "8 lowercase hex"),
    "upper-hex": (f"PeterNeumann+C74F20A3+{_KEY64}", "8 lowercase hex"),
    "wrong-id": (f"PeterNeumann+c74f20a4+{_KEY64}", "does not match"),
    "wrong-name": (f"PeterNeumanm+c74f20a3+{_KEY64}", "does not match"),
    "space-in-name": (f"Peter Neumann+c74f20a3+{_KEY64}", "invalid key name"),
    "empty-name": (f"+c74f20a3+{_KEY64}", "invalid key name"),
    "bad-base64": ("PeterNeumann+c74f20a3+AR!c", "not valid base64"),
    "unpadded": (f"PeterNeumann+c74f20a3+{_KEY64[:-1]}", "not valid base64"),
    "empty-key": ("PeterNeumann+c74f20a3+", "empty"),
    "ecdsa-type": (
        "x+"
        + key_id("x", 2, bytes(32)).hex()
        + "+"
        + base64.b64encode(b"\x02" + bytes(32)).decode(),
        "unsupported signature type 0x02",
    ),
    "short-key": (
        "x+"
        + key_id("x", 1, bytes(31)).hex()
        + "+"
        + base64.b64encode(b"\x01" + bytes(31)).decode(),
        "not 32 bytes",
    ),
}


@pytest.mark.parametrize(("vkey", "reason"), BAD_VKEYS.values(), ids=BAD_VKEYS.keys())
def test_malformed_vkeys_are_refused(vkey: str, reason: str) -> None:
    with pytest.raises(NoteError, match=re.escape(reason)):
        parse_verifier_key(vkey)


_SIG_B64 = PETER_SIG.split(" ")[2].strip()
BAD_NOTES = {
    # note_test.go's badMsgs, each with our reason.
    "text-only": (TEXT, "no blank line"),
    "no-signature": (TEXT + "\n", "no signature"),
    "unterminated-signature": (TEXT + "\n" + PETER_SIG[:-1], "does not end in a newline"),
    "control-char": ("\x01" + TEXT + "\n" + PETER_SIG, "control character"),
    "not-utf8": ("\udcff" + TEXT + "\n" + PETER_SIG, "not valid UTF-8"),
    "space-in-name": (TEXT + "\n— Bad Name " + _SIG_B64 + "\n", "not valid base64"),
    "unexpected-line": (TEXT + "\n" + PETER_SIG + "Unexpected line.\n", "em dash"),
    # more.
    "tab": (TEXT.replace(" ", "\t", 1) + "\n" + PETER_SIG, "control character"),
    "carriage-return": (TEXT + "\n" + PETER_SIG.replace("\n", "\r\n"), "control character"),
    "hyphen-not-em-dash": (TEXT + "\n- PeterNeumann " + _SIG_B64 + "\n", "em dash"),
    "no-space-after-name": (TEXT + "\n— PeterNeumann\n", "not '— name signature'"),
    "empty-signature": (TEXT + "\n— PeterNeumann \n", "not '— name signature'"),
    "plus-in-name": (TEXT + "\n— Peter+Neumann " + _SIG_B64 + "\n", "invalid key name"),
    "nbsp-in-name": (TEXT + "\n— Peter\u00a0Neumann " + _SIG_B64 + "\n", "invalid key name"),
    "key-id-only": (TEXT + "\n— PeterNeumann AAAAAA==\n", "too short"),
    "non-canonical-base64": (TEXT + "\n— PeterNeumann AAAAAAB=\n", "not canonical"),
    "too-many-signatures": (TEXT + "\n" + PETER_SIG * (MAX_SIGNATURES + 1), "more than 100"),
    "too-large": ("a" * MAX_NOTE_BYTES + "\n\n" + PETER_SIG, "larger than"),
}


@pytest.mark.parametrize(("data", "reason"), BAD_NOTES.values(), ids=BAD_NOTES.keys())
def test_malformed_notes_are_refused_with_their_reason(data: str, reason: str) -> None:
    raw = data.encode("utf-8", "surrogateescape")
    with pytest.raises(NoteError, match=re.escape(reason)) as caught:
        parse_note(raw)
    assert isinstance(caught.value, InvalidInput)


def test_the_most_signatures_allowed_parse() -> None:
    note = parse_note((TEXT + "\n" + PETER_SIG * MAX_SIGNATURES).encode())
    assert len(note.signatures) == MAX_SIGNATURES
    assert verify_note(note, verifiers=[PETER]) == [PETER]


def test_text_may_hold_blank_lines_the_last_one_splits() -> None:
    text = "first\n\nthird\n"
    note = sign_note(text, name="PeterNeumann", signer=peter_signer())
    parsed = parse_note(format_note(note))
    assert parsed == note
    assert verify_note(parsed, verifiers=[PETER]) == [PETER]


def test_the_last_blank_line_splits_even_inside_the_signature_block() -> None:
    note = parse_note((TEXT + "\n" + PETER_SIG + "\n" + ENOCH_SIG).encode())  # as Go's Open
    assert note.text == TEXT + "\n" + PETER_SIG
    assert [s.name for s in note.signatures] == ["EnochRoot"]
    with pytest.raises(NoteError, match="no signature by a known key"):
        verify_note(note, verifiers=[PETER])


def test_a_failing_signature_by_a_known_key_rejects_the_note() -> None:
    tampered = PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    note = parse_note((TEXT + "\n" + tampered + ENOCH_SIG).encode())
    with pytest.raises(NoteError, match="bad signature by PeterNeumann"):
        verify_note(note, verifiers=[ENOCH, PETER])
    assert verify_note(note, verifiers=[ENOCH]) == [ENOCH]  # unknown to this client: ignored


def test_a_known_key_signing_other_text_is_a_bad_signature() -> None:
    note = parse_note(("other text\n\n" + PETER_SIG).encode())
    with pytest.raises(NoteError, match="bad signature by PeterNeumann"):
        verify_note(note, verifiers=[PETER])


def test_signatures_sharing_only_the_name_or_only_the_id_are_ignored() -> None:
    raw = base64.b64decode(_SIG_B64)
    other_id = NoteSignature("PeterNeumann", b"\x00\x00\x00\x00", raw[4:])
    other_name = NoteSignature("CarmenSandiego", raw[:4], raw[4:])
    note = Note(TEXT, (other_id, other_name))
    with pytest.raises(NoteError, match="no signature by a known key"):
        verify_note(note, verifiers=[PETER])
    note = with_signatures(note, parse_note((TEXT + "\n" + PETER_SIG).encode()).signatures)
    assert verify_note(note, verifiers=[PETER]) == [PETER]


def test_sign_note_refuses_bad_text_and_names() -> None:
    with pytest.raises(NoteError, match="does not end in a newline"):
        sign_note("abc", name="x", signer=WITNESS)
    with pytest.raises(NoteError, match="control character"):
        sign_note("a\rb\n", name="x", signer=WITNESS)
    with pytest.raises(NoteError, match="invalid key name"):
        sign_note("abc\n", name="a b", signer=WITNESS)


def test_format_refuses_an_unsigned_note() -> None:
    with pytest.raises(NoteError, match="no signature"):
        format_note(Note(TEXT, ()))
    with pytest.raises(NoteError, match="4-byte key id"):
        format_note(Note(TEXT, (NoteSignature("x", b"\x01", b"sig"),)))


def test_with_signatures_adds_and_replaces_by_name_and_key_id() -> None:
    base = sign_note(TEXT, name="PeterNeumann", signer=peter_signer())
    first = NoteSignature("w", b"1234", b"old")
    second = NoteSignature("v", b"5678", b"sig")
    note = with_signatures(base, [first, second])
    assert note.signatures == (base.signatures[0], first, second)
    fresh = NoteSignature("w", b"1234", b"new")
    assert with_signatures(note, [fresh]).signatures == (base.signatures[0], second, fresh)
    many = [NoteSignature(f"w{i}", b"1234", b"s") for i in range(MAX_SIGNATURES)]
    with pytest.raises(NoteError, match="more than 100"):
        with_signatures(base, many)


def test_cosignature_verifies_and_carries_its_time() -> None:
    signature = cosign(SOFA_TEXT, name=WITNESS_V.name, signer=WITNESS, timestamp_s=1679315147)
    assert signature.key_id == WITNESS_V.key_id
    assert cosignature_time(signature) == 1679315147
    # The signed message, built here from the spec's words.
    message = b"cosignature/v1\ntime 1679315147\n" + SOFA_TEXT.encode()
    public = Ed25519PrivateKey.from_private_bytes(bytes(range(32))).public_key()
    public.verify(signature.signature[8:], message)
    note = with_signatures(sign_note(SOFA_TEXT, name="log", signer=peter_signer()), [signature])
    assert verify_note(parse_note(format_note(note)), verifiers=[WITNESS_V]) == [WITNESS_V]


BAD_WITNESS = re.escape("bad signature by witness.example/w1")


def test_a_cosignature_over_another_time_or_text_fails() -> None:
    signature = cosign(SOFA_TEXT, name=WITNESS_V.name, signer=WITNESS, timestamp_s=100)
    later = (101).to_bytes(8, "big") + signature.signature[8:]
    note = Note(SOFA_TEXT, (NoteSignature(signature.name, signature.key_id, later),))
    with pytest.raises(NoteError, match=BAD_WITNESS):
        verify_note(note, verifiers=[WITNESS_V])
    other = SOFA_TEXT.replace("20852163", "20852164")
    with pytest.raises(NoteError, match=BAD_WITNESS):
        verify_note(Note(other, (signature,)), verifiers=[WITNESS_V])
    short = NoteSignature(signature.name, signature.key_id, signature.signature[:-1])
    with pytest.raises(NoteError, match=BAD_WITNESS):
        verify_note(Note(SOFA_TEXT, (short,)), verifiers=[WITNESS_V])


def test_a_plain_signature_is_not_a_cosignature_of_the_same_key() -> None:
    note = sign_note(SOFA_TEXT, name=WITNESS_V.name, signer=WITNESS)
    with pytest.raises(NoteError, match="no signature by a known key"):
        verify_note(note, verifiers=[WITNESS_V])


def test_spec_cosignature_example_parses_with_its_time() -> None:
    note = parse_note(SOFA_NOTE.encode())
    assert note.text == SOFA_TEXT
    witness = note.signatures[1]
    assert witness.name == "witness.example.com/w1"
    assert cosignature_time(witness) == 1679315147  # the spec's "time 1679315147"


@pytest.mark.parametrize("timestamp_s", [-1, 2**63], ids=["negative", "past-2**63-1"])
def test_cosign_refuses_an_out_of_range_time(timestamp_s: int) -> None:
    with pytest.raises(NoteError, match="out of range"):
        cosign(SOFA_TEXT, name="w", signer=WITNESS, timestamp_s=timestamp_s)


def test_cosignature_time_refuses_other_signatures() -> None:
    with pytest.raises(NoteError, match="not a cosignature/v1"):
        cosignature_time(NoteSignature("w", b"1234", bytes(64)))
    with pytest.raises(NoteError, match="out-of-range time"):
        cosignature_time(NoteSignature("w", b"1234", b"\xff" * 72))


_NAME = st.text(string.ascii_letters + string.digits + "./-_é", min_size=1, max_size=20)
_LINE = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x2FFF, exclude_categories=("Cs",)),
    max_size=40,
)


@given(
    lines=st.lists(_LINE, min_size=1, max_size=5),
    sigs=st.lists(
        st.tuples(_NAME, st.binary(min_size=4, max_size=4), st.binary(min_size=1, max_size=80)),
        min_size=1,
        max_size=5,
    ),
)
def test_format_then_parse_round_trips(
    lines: list[str], sigs: list[tuple[str, bytes, bytes]]
) -> None:
    note = Note("".join(f"{line}\n" for line in lines), tuple(NoteSignature(*s) for s in sigs))
    assert parse_note(format_note(note)) == note


@given(data=st.binary(max_size=300))
def test_parse_never_fails_other_than_with_note_error(data: bytes) -> None:
    try:
        note = parse_note(data)
    except NoteError:
        return
    assert format_note(note) == data
