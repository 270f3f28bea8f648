from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pki_hierarchy import NOW, Hierarchy

from support.pkilint import lint_crl
from trustfleet import pki
from trustfleet.errors import InvalidInput

NEXT = NOW + timedelta(days=1)


def _entries() -> list[pki.RevokedEntry]:
    reasons: list[x509.ReasonFlags | None] = [None, *pki.REASONS.values()]
    return [
        pki.RevokedEntry(serial=pki.new_serial(), revoked_at=NOW - timedelta(hours=i), reason=r)
        for i, r in enumerate(reasons)
    ]


@pytest.mark.parametrize("count", [0, 1, 8], ids=["empty", "one", "all-reasons"])
def test_crl_lints_clean_and_verifies(hierarchy: Hierarchy, count: int) -> None:
    entries = _entries()[:count]
    crl = pki.build_crl(
        issuer=hierarchy.device_ca, revoked=entries, crl_number=42, now=NOW, next_update=NEXT
    )
    assert lint_crl(crl.public_bytes(serialization.Encoding.DER)) == []
    assert crl.is_signature_valid(hierarchy.device_ca.cert.public_key())  # type: ignore[arg-type]
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 42
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = hierarchy.device_ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert aki.key_identifier == ski.value.digest
    assert crl.last_update_utc == NOW
    assert crl.next_update_utc == NEXT
    assert len(crl) == count


def test_reason_codes(hierarchy: Hierarchy) -> None:
    entries = _entries()
    crl = pki.build_crl(
        issuer=hierarchy.root, revoked=entries, crl_number=1, now=NOW, next_update=NEXT
    )
    for entry in entries:
        revoked = crl.get_revoked_certificate_by_serial_number(entry.serial)
        assert revoked is not None
        assert revoked.revocation_date_utc == entry.revoked_at
        if entry.reason in (None, x509.ReasonFlags.unspecified):
            with pytest.raises(x509.ExtensionNotFound):
                revoked.extensions.get_extension_for_class(x509.CRLReason)
        else:
            reason = revoked.extensions.get_extension_for_class(x509.CRLReason).value
            assert reason.reason == entry.reason


@pytest.mark.parametrize(
    ("text", "flag"),
    [("keyCompromise", x509.ReasonFlags.key_compromise),
     ("cessationOfOperation", x509.ReasonFlags.cessation_of_operation),
     ("superseded", x509.ReasonFlags.superseded)],
)  # fmt: skip
def test_parse_reason(text: str, flag: x509.ReasonFlags) -> None:
    assert pki.parse_reason(text) is flag


@pytest.mark.parametrize(
    "text", ["certificateHold", "removeFromCRL", "key_compromise", "", "KEYCOMPROMISE"],
    ids=["hold", "remove", "snake-case", "empty", "uppercase"],
)  # fmt: skip
def test_parse_reason_refusals(text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        pki.parse_reason(text)
    assert "keyCompromise" in str(info.value.hint)


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [({"crl_number": -1}, "pki.crl.number"), ({"crl_number": 1 << 159}, "pki.crl.number"),
     ({"next_update": NOW}, "pki.crl.times"),
     ({"now": NOW.replace(tzinfo=None)}, "pki.crl.times"),
     ({"revoked": [pki.RevokedEntry(0, NOW, None)]}, "pki.crl.entry")],
    ids=["negative-number", "huge-number", "next-not-after-now", "naive", "zero-serial"],
)  # fmt: skip
def test_build_crl_refusals(hierarchy: Hierarchy, kwargs: dict[str, object], code: str) -> None:
    arguments: dict[str, object] = {
        "issuer": hierarchy.device_ca, "revoked": [], "crl_number": 1, "now": NOW,
        "next_update": NEXT,
    }  # fmt: skip
    arguments.update(kwargs)
    with pytest.raises(InvalidInput) as info:
        pki.build_crl(**arguments)  # type: ignore[arg-type]
    assert info.value.code == code
