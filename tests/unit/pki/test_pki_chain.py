from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from cryptography import x509
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


_Case = tuple[
    x509.Certificate, list[x509.Certificate], list[x509.Certificate], datetime, str, str | None
]


def _case(h: Hierarchy, **changes: object) -> _Case:
    """The good LDevID client case, with some of its parts changed."""
    parts: dict[str, object] = {
        "leaf": h.ldevid, "intermediates": [h.device_ca.cert], "roots": [h.root.cert],
        "now": NOW, "purpose": "client", "name": None,
    }  # fmt: skip
    parts.update(changes)
    return tuple(parts.values())  # type: ignore[return-value]


LATER = NOW + timedelta(days=31)
EARLIER = NOW - timedelta(hours=1)
NEGATIVE: dict[str, Callable[[Hierarchy, Hierarchy], _Case]] = {
    "wrong-root": lambda h, o: _case(h, roots=[o.root.cert]),
    "wrong-intermediate": lambda h, o: _case(h, intermediates=[o.device_ca.cert]),
    "missing-intermediate": lambda h, o: _case(h, intermediates=[]),
    "expired": lambda h, o: _case(h, now=LATER),
    "not-yet-valid": lambda h, o: _case(h, now=EARLIER),
    "server-cert-as-client": lambda h, o: _case(h, leaf=h.server),
    "device-cert-as-server": lambda h, o: _case(h, purpose="server", name="api.example.com"),
    "wrong-server-name": lambda h, o: _case(
        h, leaf=h.server, purpose="server", name="evil.example.com"
    ),
    "intermediate-as-leaf": lambda h, o: _case(h, leaf=h.device_ca.cert, intermediates=[]),
}


@pytest.mark.parametrize("case", list(NEGATIVE), ids=list(NEGATIVE))
def test_chain_refusals(hierarchy: Hierarchy, other: Hierarchy, case: str) -> None:
    leaf, intermediates, roots, now, purpose, name = NEGATIVE[case](hierarchy, other)
    with pytest.raises(VerificationFailed) as info:
        pki.verify_chain(
            leaf, intermediates=intermediates, roots=roots, now=now, purpose=purpose,  # type: ignore[arg-type]
            server_name=name,
        )  # fmt: skip
    assert info.value.code == "pki.chain.invalid"
    assert "does not verify" in info.value.message


def test_no_roots(hierarchy: Hierarchy) -> None:
    with pytest.raises(InvalidInput):
        pki.verify_chain(hierarchy.ldevid, intermediates=[], roots=[], now=NOW, purpose="client")
