from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from pki_hierarchy import NOW, Hierarchy, build_hierarchy

from trustfleet import pki
from trustfleet.errors import InvalidInput, VerificationFailed


def test_device_certificates_verify_as_clients(hierarchy: Hierarchy) -> None:
    roots = [hierarchy.root.cert]
    pki.verify_chain(
        hierarchy.ldevid, intermediates=[hierarchy.device_ca.cert], roots=roots, now=NOW,
        purpose="client",
    )  # fmt: skip
    pki.verify_chain(
        hierarchy.idevid,
        intermediates=[hierarchy.manufacturing.cert, hierarchy.device_ca.cert],
        roots=roots, now=NOW + timedelta(days=365), purpose="client",
    )  # fmt: skip


def test_server_certificate_verifies(hierarchy: Hierarchy) -> None:
    for name in (None, "api.example.com", "mqtt.example.com"):
        pki.verify_chain(
            hierarchy.server, intermediates=[hierarchy.device_ca.cert],
            roots=[hierarchy.root.cert], now=NOW, purpose="server", server_name=name,
        )  # fmt: skip


@pytest.fixture(scope="module")
def other() -> Hierarchy:
    return build_hierarchy(ec.SECP256R1())


NEGATIVE = {
    "wrong-root": lambda h, o: (h.ldevid, [h.device_ca.cert], [o.root.cert], NOW, "client", None),
    "wrong-intermediate": lambda h, o: (h.ldevid, [o.device_ca.cert], [h.root.cert], NOW, "client", None),
    "missing-intermediate": lambda h, o: (h.ldevid, [], [h.root.cert], NOW, "client", None),
    "expired": lambda h, o: (h.ldevid, [h.device_ca.cert], [h.root.cert], NOW + timedelta(days=31), "client", None),
    "not-yet-valid": lambda h, o: (h.ldevid, [h.device_ca.cert], [h.root.cert], NOW - timedelta(hours=1), "client", None),
    "server-cert-as-client": lambda h, o: (h.server, [h.device_ca.cert], [h.root.cert], NOW, "client", None),
    "device-cert-as-server": lambda h, o: (h.ldevid, [h.device_ca.cert], [h.root.cert], NOW, "server", "api.example.com"),
    "wrong-server-name": lambda h, o: (h.server, [h.device_ca.cert], [h.root.cert], NOW, "server", "evil.example.com"),
    "intermediate-as-leaf": lambda h, o: (h.device_ca.cert, [], [h.root.cert], NOW, "client", None),
}  # fmt: skip


@pytest.mark.parametrize("case", list(NEGATIVE), ids=list(NEGATIVE))
def test_chain_refusals(hierarchy: Hierarchy, other: Hierarchy, case: str) -> None:
    leaf, intermediates, roots, now, purpose, name = NEGATIVE[case](hierarchy, other)
    with pytest.raises(VerificationFailed) as info:
        pki.verify_chain(
            leaf, intermediates=intermediates, roots=roots, now=now, purpose=purpose,
            server_name=name,
        )  # fmt: skip
    assert info.value.code == "pki.chain.invalid"
    assert "does not verify" in info.value.message


def test_no_roots(hierarchy: Hierarchy) -> None:
    with pytest.raises(InvalidInput):
        pki.verify_chain(hierarchy.ldevid, intermediates=[], roots=[], now=NOW, purpose="client")
