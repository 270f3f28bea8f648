"""CRLs are issued on demand, reissued before nextUpdate and on every revocation (RFC 5280)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509

from support.pkilint import lint_crl
from support.runtimes import home_runtime, new_idevid
from trustfleet.services.revocation import current_crl, refresh_crls, revoke_device
from trustfleet.services.runtime import Runtime

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    yield from home_runtime(tmp_path_factory, "crl", organization="CRL Test", now=T0)


def _register(rt: Runtime, device_id: str) -> x509.Certificate:
    return new_idevid(rt, device_id, model="crl-test", now=T0)[1]


def _number(der: bytes) -> int:
    crl = x509.load_der_x509_crl(der)
    return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)


def test_crl_is_reissued_only_near_next_update(rt: Runtime) -> None:
    first = current_crl(rt, "device", now=T0)
    assert current_crl(rt, "device", now=T0 + timedelta(hours=1)) == first
    # 24 h validity, 6 h margin: at +19 h the CRL is due again.
    later = current_crl(rt, "device", now=T0 + timedelta(hours=19))
    assert _number(later) == _number(first) + 1
    assert x509.load_der_x509_crl(later).next_update_utc == T0 + timedelta(hours=43)


def test_refresh_covers_every_online_ca_and_every_crl_lints_clean(rt: Runtime) -> None:
    # The root CA is offline (issue 14): its CRL was signed at init and is served as stored.
    assert sorted(refresh_crls(rt, now=T0)) == ["device", "manufacturing"]
    for issuer in ("root", "manufacturing", "device"):
        der = current_crl(rt, issuer, now=T0)
        assert lint_crl(der) == []
    root = current_crl(rt, "root", now=T0 + timedelta(days=400))  # stale: still not re-signed
    assert _number(root) == 1
    assert x509.load_der_x509_crl(root).next_update_utc == T0 + timedelta(days=365)


def test_revocation_reissues_the_crl_at_once(rt: Runtime) -> None:
    cert = _register(rt, "crl-device-0001")
    before = current_crl(rt, "manufacturing", now=T0)
    revoke_device(
        rt, "crl-device-0001", reason="keyCompromise", actor="test", now=T0 + timedelta(minutes=1)
    )
    after = current_crl(rt, "manufacturing", now=T0 + timedelta(minutes=2))
    assert _number(after) > _number(before)
    entry = x509.load_der_x509_crl(after).get_revoked_certificate_by_serial_number(
        cert.serial_number
    )
    assert entry is not None
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason is x509.ReasonFlags.key_compromise
    assert lint_crl(after) == []


def test_unknown_ca_is_not_found(rt: Runtime) -> None:
    from trustfleet.errors import NotFound

    with pytest.raises(NotFound):
        current_crl(rt, "nope", now=T0)
