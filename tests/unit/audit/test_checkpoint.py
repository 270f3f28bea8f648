"""C2SP tlog-checkpoint: spec example, round trips, each malformation refused with its reason."""

from __future__ import annotations

import base64
import re
import string

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from trustfleet.audit import (
    ED25519,
    MAX_TREE_SIZE,
    Checkpoint,
    CheckpointError,
    NoteError,
    Verifier,
    format_note,
    parse_checkpoint,
    parse_note,
    sign_note,
    verify_note,
)

# c2sp.org/tlog-checkpoint, the example.
SOFA = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
ROOT = base64.b64encode(bytes(range(32))).decode()


def test_spec_example_parses() -> None:
    checkpoint = parse_checkpoint(SOFA)
    assert checkpoint.origin == "example.com/behind-the-sofa"
    assert checkpoint.size == 20852163
    assert checkpoint.root == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert checkpoint.extensions == ()
    assert checkpoint.text() == SOFA


def test_empty_tree_and_extension_lines_round_trip() -> None:
    checkpoint = Checkpoint("log.example/a", 0, bytes(32), extensions=("ext one", "ext two"))
    zero_root = base64.b64encode(bytes(32)).decode()
    assert checkpoint.text() == f"log.example/a\n0\n{zero_root}\next one\next two\n"
    assert parse_checkpoint(checkpoint.text()) == checkpoint


def test_largest_size_round_trips() -> None:
    checkpoint = Checkpoint("o", MAX_TREE_SIZE, bytes(32))
    assert parse_checkpoint(checkpoint.text()) == checkpoint


BAD_TEXTS = {
    "no-final-newline": (SOFA[:-1], "does not end in a newline"),
    "two-lines": ("origin\n1\n", "fewer than three lines"),
    "empty": ("", "does not end in a newline"),
    "empty-origin": (f"\n1\n{ROOT}\n", "origin is empty"),
    "tab-in-origin": (f"a\tb\n1\n{ROOT}\n", "control character"),
    "leading-zero": (f"o\n01\n{ROOT}\n", "without leading zeros"),
    "negative": (f"o\n-1\n{ROOT}\n", "without leading zeros"),
    "plus-sign": (f"o\n+1\n{ROOT}\n", "without leading zeros"),
    "space-in-size": (f"o\n 1\n{ROOT}\n", "without leading zeros"),
    "empty-size": (f"o\n\n{ROOT}\n", "without leading zeros"),
    "arabic-digit": (f"o\n\u0661\n{ROOT}\n", "without leading zeros"),
    "hex-size": (f"o\n0x10\n{ROOT}\n", "without leading zeros"),
    "size-past-uint64": (f"o\n{MAX_TREE_SIZE + 1}\n{ROOT}\n", "out of range"),
    "size-of-21-digits": (f"o\n{10**20}\n{ROOT}\n", "without leading zeros"),
    "short-root": (f"o\n1\n{base64.b64encode(bytes(31)).decode()}\n", "base64 of 32 bytes"),
    "long-root": (f"o\n1\n{base64.b64encode(bytes(33)).decode()}\n", "base64 of 32 bytes"),
    "root-not-base64": ("o\n1\n!!!!\n", "not valid base64"),
    "root-unpadded": (f"o\n1\n{ROOT[:-1]}\n", "not valid base64"),
    "root-non-canonical": (f"o\n1\n{ROOT[:-2]}B=\n", "not canonical base64"),
    "root-hex": (f"o\n1\n{bytes(32).hex()}\n", "base64 of 32 bytes"),
    "empty-extension": (f"o\n1\n{ROOT}\n\next\n", "extension line is empty"),
    "trailing-blank-line": (f"o\n1\n{ROOT}\n\n", "extension line is empty"),
    "carriage-return": (f"o\r\n1\n{ROOT}\n", "control character"),
}


@pytest.mark.parametrize(("text", "reason"), BAD_TEXTS.values(), ids=BAD_TEXTS.keys())
def test_malformed_checkpoints_are_refused_with_their_reason(text: str, reason: str) -> None:
    with pytest.raises(CheckpointError, match=re.escape(reason)) as caught:
        parse_checkpoint(text)
    assert isinstance(caught.value, NoteError)


BAD_FIELDS = {
    "negative-size": ({"size": -1}, "out of range"),
    "bool-size": ({"size": True}, "out of range"),
    "short-root": ({"root": bytes(31)}, "not 32 bytes"),
    "newline-in-origin": ({"origin": "a\nb"}, "control character"),
    "empty-origin": ({"origin": ""}, "origin is empty"),
    "empty-extension": ({"extensions": ("",)}, "extension line is empty"),
    "newline-in-extension": ({"extensions": ("a\nb",)}, "control character"),
}


@pytest.mark.parametrize(("fields", "reason"), BAD_FIELDS.values(), ids=BAD_FIELDS.keys())
def test_a_checkpoint_that_cannot_be_written_is_refused(
    fields: dict[str, object], reason: str
) -> None:
    values: dict[str, object] = {"origin": "o", "size": 1, "root": bytes(32), **fields}
    with pytest.raises(CheckpointError, match=re.escape(reason)):
        Checkpoint(**values)  # type: ignore[arg-type]  # the values are deliberately wrong


class _Key:
    def __init__(self) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(bytes(32))

    def public_bytes_raw(self) -> bytes:
        return self._key.public_key().public_bytes_raw()

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


def test_a_signed_checkpoint_note_round_trips() -> None:
    key = _Key()
    checkpoint = Checkpoint("log.example/audit", 7, bytes(range(32)))
    data = format_note(sign_note(checkpoint.text(), name=checkpoint.origin, signer=key))
    note = parse_note(data)
    verifier = Verifier(checkpoint.origin, ED25519, key.public_bytes_raw())
    assert verify_note(note, verifiers=[verifier]) == [verifier]
    assert parse_checkpoint(note.text) == checkpoint


_LINE = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x2FFF, exclude_categories=("Cs",)),
    min_size=1,
    max_size=30,
)


@given(
    origin=_LINE,
    size=st.integers(min_value=0, max_value=MAX_TREE_SIZE),
    root=st.binary(min_size=32, max_size=32),
    extensions=st.lists(_LINE, max_size=3),
)
def test_text_then_parse_round_trips(
    origin: str, size: int, root: bytes, extensions: list[str]
) -> None:
    checkpoint = Checkpoint(origin, size, root, tuple(extensions))
    assert parse_checkpoint(checkpoint.text()) == checkpoint


@given(text=st.text(string.printable, max_size=120))
def test_parse_fails_only_with_checkpoint_error(text: str) -> None:
    try:
        checkpoint = parse_checkpoint(text)
    except CheckpointError:
        return
    assert checkpoint.text() == text
