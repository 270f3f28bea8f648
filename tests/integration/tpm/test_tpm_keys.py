"""EK and its certificate, the AK, and credential activation against a real swtpm."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from tpm_support import vendor_certificates

from support.certs import cert_builder
from trustfleet.attestation.credential import ak_name_matches, make_credential
from trustfleet.attestation.ekcert import check_ek_certificate
from trustfleet.errors import Conflict, InvalidInput, NotFound, VerificationFailed
from trustfleet.keystore.tpm import ManufacturerCa, SwtpmInstance, Tpm

SECRET = bytes(range(32))


def _impostor_cas() -> list[x509.Certificate]:
    """A root and an issuing CA with the vendor CA's names but other keys."""
    now = datetime.now(UTC)
    root_key, issuer_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )

    def cert(cn: str, key: ec.EllipticCurvePrivateKey, signer: ec.EllipticCurvePrivateKey,
             issuer_cn: str) -> x509.Certificate:  # fmt: skip
        day = timedelta(days=1)
        return (
            cert_builder(cn, key, issuer_cn=issuer_cn, not_before=now - day, not_after=now + day)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(signer, hashes.SHA256())
        )

    root = cert("swtpm-localca-rootca", root_key, root_key, "swtpm-localca-rootca")
    return [root, cert("swtpm-localca", issuer_key, root_key, "swtpm-localca-rootca")]


def test_ek_certificate_chains_to_the_vendor_ca(tpm: Tpm, vendor_ca: ManufacturerCa) -> None:
    cert = tpm.ek_certificate()
    check_ek_certificate(
        cert,
        ek_public=tpm.ek_public(),
        manufacturer_cas=vendor_certificates(vendor_ca),
        now=datetime.now(UTC),
    )


_Case = Callable[[Tpm, Tpm, ManufacturerCa], dict[str, object]]
REFUSED: dict[str, tuple[_Case, str]] = {
    "another-ca-same-names": (lambda t, o, ca: {"manufacturer_cas": _impostor_cas()}, "chain"),
    "issuing-ca-without-root": (
        lambda t, o, ca: {"manufacturer_cas": vendor_certificates(ca)[1:]},
        "chain",
    ),
    "another-tpms-ek": (lambda t, o, ca: {"ek_public": o.ek_public()}, "key_mismatch"),
    "another-tpms-certificate": (lambda t, o, ca: {"cert_der": o.ek_certificate()}, "key_mismatch"),
    "before-its-validity": (
        lambda t, o, ca: {"now": datetime(2000, 1, 1, tzinfo=UTC)},
        "expired",
    ),
    "truncated-der": (lambda t, o, ca: {"cert_der": t.ek_certificate()[:-10]}, "malformed"),
}


@pytest.mark.parametrize("case", REFUSED, ids=list(REFUSED))
def test_ek_certificate_refusals(
    case: str, tpm: Tpm, other_tpm: Tpm, vendor_ca: ManufacturerCa
) -> None:
    make, code = REFUSED[case]
    args: dict[str, object] = {
        "cert_der": tpm.ek_certificate(),
        "ek_public": tpm.ek_public(),
        "manufacturer_cas": vendor_certificates(vendor_ca),
        "now": datetime.now(UTC),
    }
    args.update(make(tpm, other_tpm, vendor_ca))
    cert_der = args.pop("cert_der")
    with pytest.raises(VerificationFailed) as err:
        check_ek_certificate(cert_der, **args)
    assert err.value.code == f"attestation.ek.{code}"


def test_no_manufacturer_ca_is_a_configuration_problem(tpm: Tpm) -> None:
    with pytest.raises(InvalidInput):
        check_ek_certificate(
            tpm.ek_certificate(),
            ek_public=tpm.ek_public(),
            manufacturer_cas=[],
            now=datetime.now(UTC),
        )


def test_the_ak_is_a_persistent_restricted_signing_key(tpm: Tpm) -> None:
    with pytest.raises(NotFound):
        tpm.ak()
    ak = tpm.create_ak()
    assert ak.handle == 0x81010002
    assert ak_name_matches(ak.public, ak.name)
    assert not ak_name_matches(ak.public, ak.name[:-1] + bytes([ak.name[-1] ^ 1]))
    assert ak.public_pem.startswith("-----BEGIN PUBLIC KEY-----")
    with pytest.raises(Conflict):
        tpm.create_ak()
    replaced = tpm.create_ak(replace=True)
    assert replaced.name != ak.name
    assert tpm.ak() == replaced


def test_the_ek_is_not_an_ak(tpm: Tpm) -> None:
    ek = tpm.ek_public()
    with pytest.raises(VerificationFailed) as err:
        ak_name_matches(ek, b"\x00\x0b" + bytes(32))
    assert err.value.code == "attestation.ak.attributes"


@pytest.mark.parametrize("ek_type", ["rsa2048", "ecc256"])
def test_credential_activation_round_trip(swtpm: SwtpmInstance, ek_type: str) -> None:
    with Tpm(tcti=swtpm.tcti, ek_type=ek_type) as tpm:
        ak = tpm.create_ak()
        blob, seed = make_credential(ek_public=tpm.ek_public(), ak_name=ak.name, secret=SECRET)
        assert tpm.activate_credential(blob, seed) == SECRET


def test_credential_for_another_ek_fails(tpm: Tpm, other_tpm: Tpm) -> None:
    ak = tpm.create_ak()
    blob, seed = make_credential(ek_public=other_tpm.ek_public(), ak_name=ak.name, secret=SECRET)
    with pytest.raises(VerificationFailed) as err:
        tpm.activate_credential(blob, seed)
    assert err.value.code == "tpm.credential"


def test_credential_for_another_ak_name_fails(tpm: Tpm, other_tpm: Tpm) -> None:
    ak = tpm.create_ak()
    other_ak = other_tpm.create_ak()
    blob, seed = make_credential(ek_public=tpm.ek_public(), ak_name=other_ak.name, secret=SECRET)
    with pytest.raises(VerificationFailed):
        tpm.activate_credential(blob, seed)
    assert ak.name != other_ak.name


def test_ecc_ek_has_no_certificate_on_this_swtpm(swtpm: SwtpmInstance) -> None:
    # swtpm 0.7 certifies an RSA 2048 and an ECC P-384 EK; the P-256 template has none.
    with Tpm(tcti=swtpm.tcti, ek_type="ecc256") as tpm, pytest.raises(NotFound) as err:
        tpm.ek_certificate()
    assert err.value.code == "tpm.ek.no_certificate"


@pytest.mark.parametrize(
    ("blob", "seed"),
    [(b"", b"x"), (b"x" * 257, b"x"), (b"x", b""), (b"x", b"x" * 513)],
    ids=["empty-blob", "huge-blob", "empty-seed", "huge-seed"],
)
def test_activation_inputs_are_bounded(tpm: Tpm, blob: bytes, seed: bytes) -> None:
    with pytest.raises(InvalidInput):
        tpm.activate_credential(blob, seed)
