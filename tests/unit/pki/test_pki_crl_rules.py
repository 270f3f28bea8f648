"""CRL rules (RFC 5280 §5), exactly: numbers, thisUpdate/nextUpdate, entries, reason codes.

One P-256 hierarchy per module, so the file is fast enough to run once per mutant of
``trustfleet.pki.crl``.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import CRLEntryExtensionOID, ExtensionOID
from pki_hierarchy import NOW, Hierarchy, build_hierarchy

from trustfleet import pki
from trustfleet.errors import InvalidInput

NEXT = NOW + timedelta(days=1)
MAX_CRL_NUMBER = (1 << 159) - 1  # 20 octets, RFC 5280 §5.2.3

RFC_5280_NAMES = {
    "unspecified": x509.ReasonFlags.unspecified,
    "keyCompromise": x509.ReasonFlags.key_compromise,
    "caCompromise": x509.ReasonFlags.ca_compromise,
    "affiliationChanged": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessationOfOperation": x509.ReasonFlags.cessation_of_operation,
    "privilegeWithdrawn": x509.ReasonFlags.privilege_withdrawn,
}


@pytest.fixture(scope="module")
def h() -> Hierarchy:
    return build_hierarchy(ec.SECP256R1())


def _crl(h: Hierarchy, **kwargs: object) -> x509.CertificateRevocationList:
    arguments: dict[str, object] = {
        "issuer": h.device_ca, "revoked": [], "crl_number": 1, "now": NOW, "next_update": NEXT,
    }  # fmt: skip
    arguments.update(kwargs)
    return pki.build_crl(**arguments)  # type: ignore[arg-type]


def _refused(h: Hierarchy, code: str, **kwargs: object) -> None:
    with pytest.raises(InvalidInput) as info:
        _crl(h, **kwargs)
    assert info.value.code == code


def _entry(serial: int = 1, reason: x509.ReasonFlags | None = None) -> pki.RevokedEntry:
    return pki.RevokedEntry(serial=serial, revoked_at=NOW - timedelta(hours=1), reason=reason)


def test_crl_header_is_exact(h: Hierarchy) -> None:
    crl = _crl(h, crl_number=7)
    assert crl.issuer == h.device_ca.cert.subject
    assert crl.last_update_utc == NOW
    assert crl.next_update_utc == NEXT
    assert {ext.oid: ext.critical for ext in crl.extensions} == {
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER: False,
        ExtensionOID.CRL_NUMBER: False,
    }
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value == x509.CRLNumber(7)
    ski = h.device_ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki == x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    assert len(crl) == 0
    assert crl.is_signature_valid(h.device_ca.cert.public_key())  # type: ignore[arg-type]


@pytest.mark.parametrize("number", [0, 1, MAX_CRL_NUMBER], ids=["zero", "one", "2^159-1"])
def test_crl_number_bounds_accepted(h: Hierarchy, number: int) -> None:
    crl = _crl(h, crl_number=number)
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == number


@pytest.mark.parametrize("number", [-1, MAX_CRL_NUMBER + 1], ids=["minus-one", "2^159"])
def test_crl_number_out_of_bounds_is_refused(h: Hierarchy, number: int) -> None:
    _refused(h, "pki.crl.number", crl_number=number)


def test_next_update_one_second_after_this_update_is_accepted(h: Hierarchy) -> None:
    crl = _crl(h, next_update=NOW + timedelta(seconds=1))
    assert crl.last_update_utc == NOW
    assert crl.next_update_utc == NOW + timedelta(seconds=1)


@pytest.mark.parametrize(
    "kwargs",
    [{"next_update": NOW}, {"next_update": NOW - timedelta(seconds=1)},
     {"now": NOW.replace(tzinfo=None)}, {"next_update": NEXT.replace(tzinfo=None)},
     {"now": NOW.replace(tzinfo=None), "next_update": NEXT.replace(tzinfo=None)}],
    ids=["next-equals-this", "next-before-this", "naive-this", "naive-next", "both-naive"],
)  # fmt: skip
def test_crl_times_refused(h: Hierarchy, kwargs: dict[str, object]) -> None:
    _refused(h, "pki.crl.times", **kwargs)


# Regression: the order was checked before the fractions were dropped, so a nextUpdate later
# than thisUpdate within the same second gave a CRL whose nextUpdate equals its thisUpdate.
@pytest.mark.parametrize(
    ("now", "next_update"),
    [
        (NOW + timedelta(microseconds=200_000), NOW + timedelta(microseconds=700_000)),
        (NOW, NOW + timedelta(microseconds=999_999)),
    ],
    ids=["both-within-one-second", "next-under-a-second-later"],
)
def test_next_update_in_the_same_whole_second_is_refused(
    h: Hierarchy, now: datetime, next_update: datetime
) -> None:
    _refused(h, "pki.crl.times", now=now, next_update=next_update)


def test_next_update_in_the_next_whole_second_is_accepted(h: Hierarchy) -> None:
    crl = _crl(h, now=NOW + timedelta(microseconds=999_999), next_update=NOW + timedelta(seconds=1))
    assert crl.next_update_utc == NOW + timedelta(seconds=1)
    assert crl.last_update_utc == NOW


def test_fractions_of_a_second_are_dropped(h: Hierarchy) -> None:
    entry = pki.RevokedEntry(1, NOW - timedelta(seconds=1, microseconds=-999_999))
    crl = _crl(
        h, now=NOW + timedelta(microseconds=999_999),
        next_update=NEXT + timedelta(microseconds=1), revoked=[entry],
    )  # fmt: skip
    assert crl.last_update_utc == NOW
    assert crl.next_update_utc == NEXT
    listed = crl.get_revoked_certificate_by_serial_number(1)
    assert listed is not None
    assert listed.revocation_date_utc == NOW - timedelta(seconds=1)


def test_entries_are_listed_with_exact_serial_date_and_reason(h: Hierarchy) -> None:
    entries = [
        pki.RevokedEntry(serial=1, revoked_at=NOW - timedelta(days=2), reason=None),
        pki.RevokedEntry(5, NOW - timedelta(hours=3), x509.ReasonFlags.key_compromise),
        pki.RevokedEntry(pki.new_serial(), NOW, x509.ReasonFlags.unspecified),
    ]
    crl = _crl(h, revoked=entries)
    assert len(crl) == 3
    for entry in entries:
        listed = crl.get_revoked_certificate_by_serial_number(entry.serial)
        assert listed is not None
        assert listed.revocation_date_utc == entry.revoked_at
    key_compromise = crl.get_revoked_certificate_by_serial_number(5)
    assert key_compromise is not None
    assert [(ext.oid, ext.critical) for ext in key_compromise.extensions] == [
        (CRLEntryExtensionOID.CRL_REASON, False)
    ]
    assert key_compromise.extensions.get_extension_for_class(x509.CRLReason).value == (
        x509.CRLReason(x509.ReasonFlags.key_compromise)
    )
    for serial in (1, entries[2].serial):  # no reason, and unspecified: no reasonCode at all
        listed = crl.get_revoked_certificate_by_serial_number(serial)
        assert listed is not None
        assert len(listed.extensions) == 0


@pytest.mark.parametrize("name", [n for n in RFC_5280_NAMES if n != "unspecified"])
def test_every_offered_reason_is_written_as_its_reason_code(h: Hierarchy, name: str) -> None:
    crl = _crl(h, revoked=[_entry(3, pki.parse_reason(name))])
    listed = crl.get_revoked_certificate_by_serial_number(3)
    assert listed is not None
    reason = listed.extensions.get_extension_for_class(x509.CRLReason).value
    assert reason.reason is RFC_5280_NAMES[name]


@pytest.mark.parametrize(
    ("serial", "naive"), [(0, False), (-1, False), (1, True)],
    ids=["zero-serial", "negative-serial", "naive-time"],
)  # fmt: skip
def test_bad_entries_are_refused(h: Hierarchy, serial: int, naive: bool) -> None:
    revoked_at = NOW.replace(tzinfo=None) if naive else NOW
    _refused(h, "pki.crl.entry", revoked=[pki.RevokedEntry(serial, revoked_at)])


def test_serial_one_is_the_smallest_entry(h: Hierarchy) -> None:
    crl = _crl(h, revoked=[_entry(1)])
    assert crl.get_revoked_certificate_by_serial_number(1) is not None


def test_reasons_are_exactly_the_rfc_5280_names_offered() -> None:
    assert dict(pki.REASONS) == RFC_5280_NAMES
    for name, flag in RFC_5280_NAMES.items():
        assert pki.parse_reason(name) is flag


@pytest.mark.parametrize(
    "text",
    ["certificateHold", "removeFromCRL", "aACompromise", "key_compromise", ""],
)
def test_unknown_reasons_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        pki.parse_reason(text)
    assert info.value.code == "pki.revocation.reason"


def test_reasons_and_entries_are_read_only() -> None:
    with pytest.raises(TypeError):
        pki.REASONS["certificateHold"] = x509.ReasonFlags.certificate_hold  # type: ignore[index]
    entry = _entry()
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.serial = 2  # type: ignore[misc]
