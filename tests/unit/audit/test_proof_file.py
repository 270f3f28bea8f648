"""C2SP tlog-proof files: what ``trustfleet audit prove`` writes and ``verify --proof`` reads."""

from __future__ import annotations

import base64

import pytest

from trustfleet.audit.proof_file import (
    MAX_PROOF_FILE_BYTES,
    PROOF_HEADER,
    ProofFileError,
    TlogProof,
)

NOTE = (
    b"example.com/log\n3\n"
    + base64.b64encode(b"\x01" * 32)
    + b"\n\n\xe2\x80\x94 example.com/log AAAA\n"
)
PROOF = TlogProof(index=2, hashes=(b"\x02" * 32, b"\x03" * 32), note=NOTE, extra=b'{"id":3}')


def test_the_file_has_the_spec_layout() -> None:
    text = PROOF.to_bytes()
    lines = text.split(b"\n")
    assert lines[0] == PROOF_HEADER.encode()
    assert lines[1] == b"extra " + base64.b64encode(b'{"id":3}')
    assert lines[2] == b"index 2"
    assert lines[3] == base64.b64encode(b"\x02" * 32)
    assert text.endswith(b"\n\n" + NOTE)


@pytest.mark.parametrize("extra", [b'{"id":3}', None])
def test_round_trip(extra: bytes | None) -> None:
    proof = TlogProof(index=2, hashes=PROOF.hashes, note=NOTE, extra=extra)
    assert TlogProof.parse(proof.to_bytes()) == proof


def test_an_empty_proof_round_trips() -> None:  # a tree of one entry
    proof = TlogProof(index=0, hashes=(), note=NOTE)
    assert TlogProof.parse(proof.to_bytes()) == proof


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"c2sp.org/tlog-proof@v2\nindex 1\n\n" + NOTE, "must start with"),
        (b"c2sp.org/tlog-proof@v1\n\n" + NOTE, "no 'index N'"),
        (b"c2sp.org/tlog-proof@v1\nindex 01\n\n" + NOTE, "not a decimal"),
        (b"c2sp.org/tlog-proof@v1\nindex -1\n\n" + NOTE, "not a decimal"),
        (b"c2sp.org/tlog-proof@v1\nindex 1\nnot-base64!\n\n" + NOTE, "not base64"),
        (
            b"c2sp.org/tlog-proof@v1\nindex 1\n" + base64.b64encode(b"x" * 31) + b"\n\n" + NOTE,
            "32 bytes",
        ),
        (b"c2sp.org/tlog-proof@v1\nextra @@\nindex 1\n\n" + NOTE, "extra is not base64"),
        (b"c2sp.org/tlog-proof@v1\nindex 1\n", "no blank line"),
        (
            b"c2sp.org/tlog-proof@v1\nindex 1\n"
            + (base64.b64encode(b"x" * 32) + b"\n") * 65
            + b"\n"
            + NOTE,
            "more than 64",
        ),
        (b"x" * (MAX_PROOF_FILE_BYTES + 1), "over"),
    ],
)
def test_malformed_files_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ProofFileError, match=reason):
        TlogProof.parse(data)
