"""EK certificates (TCG EK Credential Profile) checked against manufacturer CAs, offline.

Every certificate is made here with ``cryptography`` around one fixed instant ``T0`` that is
also the ``now`` of the check, so the tests mean the same on any date.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtensionOID, NameOID, ObjectIdentifier

from trustfleet.attestation.ekcert import (
    MAX_EK_CERT_BYTES,
    MAX_EK_CHAIN_DEPTH,
    check_ek_certificate,
)
from trustfleet.errors import InvalidInput, VerificationFailed

T0 = datetime(2031, 3, 4, 5, 6, 7, tzinfo=UTC)
DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)

Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

ROOT_KEY, ISSUER_KEY, EK_KEY, OTHER_KEY = (ec.generate_private_key(ec.SECP256R1()) for _ in "1234")
RSA_EK_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)

# TPMA_OBJECT of a TCG EK: fixedTPM, fixedParent, sensitiveDataOrigin, adminWithPolicy,
# restricted, decrypt.
EK_ATTRIBUTES = 0x2 | 0x10 | 0x20 | 0x80 | 0x10000 | 0x20000
AES_128_CFB = struct.pack(">HHH", 0x0006, 128, 0x0043)
NULL = struct.pack(">H", 0x0010)


def _tpm2b(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


def ek_public(key: Key) -> bytes:
    """The marshalled TPM2B_PUBLIC of ``key`` with an EK template (SHA-256, AES-128-CFB)."""
    head = struct.pack(">I", EK_ATTRIBUTES) + _tpm2b(bytes(32)) + AES_128_CFB + NULL
    if isinstance(key, rsa.RSAPrivateKey):
        modulus = key.public_key().public_numbers().n.to_bytes(256, "big")
        area = struct.pack(">HH", 0x0001, 0x000B) + head + struct.pack(">HI", 2048, 0)
        return _tpm2b(area + _tpm2b(modulus))
    numbers = key.public_key().public_numbers()
    point = _tpm2b(numbers.x.to_bytes(32, "big")) + _tpm2b(numbers.y.to_bytes(32, "big"))
    area = struct.pack(">HH", 0x0023, 0x000B) + head + struct.pack(">H", 0x0003) + NULL
    return _tpm2b(area + point)


def name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def ca(
    cn: str,
    key: Key,
    *,
    issuer: str | None = None,
    signer: Key | None = None,
    path_length: int | None = None,
    is_ca: bool | None = True,
    key_usage: bool | None = True,
    not_before: datetime = T0 - 10 * DAY,
    not_after: datetime = T0 + 10 * DAY,
) -> x509.Certificate:
    """A CA certificate; self-signed unless ``issuer``/``signer`` are given.

    ``is_ca=None`` leaves basicConstraints out; ``key_usage=None`` leaves keyUsage out and
    ``False`` gives one without keyCertSign.
    """
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(cn))
        .issuer_name(name(issuer or cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    if is_ca is not None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=is_ca, path_length=path_length if is_ca else None),
            critical=True,
        )
    if key_usage is not None:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=not key_usage, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                key_cert_sign=key_usage, crl_sign=True, encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
    return builder.sign(signer or key, hashes.SHA256())


TCG_SAN = x509.SubjectAlternativeName(
    [
        x509.DirectoryName(
            x509.Name(
                [
                    x509.NameAttribute(ObjectIdentifier("2.23.133.2.1"), "id:53575450"),
                    x509.NameAttribute(ObjectIdentifier("2.23.133.2.2"), "swtpm"),
                    x509.NameAttribute(ObjectIdentifier("2.23.133.2.3"), "id:20191023"),
                ]
            )
        )
    ]
)
# SubjectDirectoryAttributes holding tpmSpecification {"2.0", level 0, revision 138}.
_TPM_SPEC = bytes.fromhex("3011300f06056781050210310630040c02322e30")
TCG_SDA = x509.UnrecognizedExtension(ExtensionOID.SUBJECT_DIRECTORY_ATTRIBUTES, _TPM_SPEC)
UNKNOWN_OID = ObjectIdentifier("1.3.6.1.4.1.55555.1")


def ek_cert(
    key: Key = EK_KEY,
    *,
    issuer: str = "EK Issuing CA",
    signer: Key = ISSUER_KEY,
    not_before: datetime = T0 - 5 * DAY,
    not_after: datetime = T0 + 5 * DAY,
    tcg: bool = True,
    extra: tuple[x509.ExtensionType, bool] | None = None,
) -> x509.Certificate:
    """An EK certificate as the TCG profile has it: empty subject, critical TCG SAN, ..."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]) if tcg else name("ek"))
        .issuer_name(name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    if tcg:
        builder = (
            builder.add_extension(TCG_SAN, critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=True,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ObjectIdentifier("2.23.133.8.1")]), critical=True)
            .add_extension(
                x509.CertificatePolicies(
                    [x509.PolicyInformation(x509.ObjectIdentifier("2.23.133.2.1"), None)]
                ),
                critical=True,
            )
            .add_extension(TCG_SDA, critical=True)
        )
    if extra is not None:
        builder = builder.add_extension(extra[0], critical=extra[1])
    return builder.sign(signer, hashes.SHA256())


def der(cert: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return cert.public_bytes(Encoding.DER)


ROOT = ca("EK Root CA", ROOT_KEY)
ISSUER = ca("EK Issuing CA", ISSUER_KEY, issuer="EK Root CA", signer=ROOT_KEY, path_length=0)
CAS = [ROOT, ISSUER]
EK_DER = der(ek_cert())


def check(
    cert_der: bytes = EK_DER,
    *,
    key: Key = EK_KEY,
    cas: list[x509.Certificate] | None = None,
    now: datetime = T0,
) -> None:
    check_ek_certificate(
        cert_der, ek_public=ek_public(key), manufacturer_cas=CAS if cas is None else cas, now=now
    )


def refused(code: str, cert_der: bytes = EK_DER, **kwargs: object) -> None:
    with pytest.raises(VerificationFailed) as info:
        check(cert_der, **kwargs)  # type: ignore[arg-type]
    assert info.value.code == f"attestation.ek.{code}"


# --- accepted ---------------------------------------------------------------------------------


def test_a_tcg_ek_certificate_through_an_issuing_ca_is_accepted() -> None:
    cert = x509.load_der_x509_certificate(EK_DER)
    assert cert.subject == x509.Name([])
    assert {e.oid for e in cert.extensions if e.critical} >= {
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME, ExtensionOID.SUBJECT_DIRECTORY_ATTRIBUTES,
        ExtensionOID.CERTIFICATE_POLICIES, ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.KEY_USAGE, ExtensionOID.BASIC_CONSTRAINTS,
    }  # fmt: skip
    check()
    check(cas=[ISSUER, ROOT])  # the order of the CAs does not matter


def test_an_rsa_ek_certificate_is_accepted() -> None:
    check(der(ek_cert(RSA_EK_KEY)), key=RSA_EK_KEY)


def test_an_ek_certificate_signed_by_the_root_itself_is_accepted() -> None:
    check(der(ek_cert(issuer="EK Root CA", signer=ROOT_KEY)), cas=[ROOT])


def test_an_unknown_non_critical_extension_is_ignored() -> None:
    pad = x509.UnrecognizedExtension(UNKNOWN_OID, b"\x05\x00")
    check(der(ek_cert(extra=(pad, False))))


# --- configuration and input ------------------------------------------------------------------


def test_no_manufacturer_ca_is_a_configuration_error() -> None:
    with pytest.raises(InvalidInput) as info:
        check(cas=[])
    assert info.value.code == "attestation.ek.no_cas"


def test_a_malformed_ek_public_is_invalid_input() -> None:
    with pytest.raises(InvalidInput) as info:
        check_ek_certificate(EK_DER, ek_public=ek_public(EK_KEY)[:-1], manufacturer_cas=CAS, now=T0)
    assert info.value.code == "attestation.tpm.public"


def _padded_to(size: int) -> bytes:
    """A valid EK certificate of exactly ``size`` DER bytes (a non-critical padding extension)."""
    pad = size - len(EK_DER) - 20
    for _ in range(50):
        cert = der(ek_cert(extra=(x509.UnrecognizedExtension(UNKNOWN_OID, bytes(pad)), False)))
        if len(cert) == size:
            return cert
        pad += size - len(cert)
    raise AssertionError(f"no certificate of {size} bytes")


def test_a_certificate_of_exactly_the_size_bound_is_accepted() -> None:
    assert MAX_EK_CERT_BYTES == 4096
    check(_padded_to(4096))


def test_a_valid_certificate_one_byte_over_the_size_bound_is_malformed() -> None:
    refused("malformed", _padded_to(4097))


@pytest.mark.parametrize(
    "cert_der",
    [b"", b"\x30", EK_DER[:-10], EK_DER + b"\x00", b"\x30\x03\x02\x01\x01", EK_DER.hex()],
    ids=["empty", "one-byte", "truncated", "trailing-byte", "not-a-certificate", "text"],
)
def test_bytes_that_are_not_one_der_certificate_are_malformed(cert_der: bytes) -> None:
    refused("malformed", cert_der)


# --- the certificate itself -------------------------------------------------------------------


def test_a_certificate_for_another_key_is_key_mismatch() -> None:
    refused("key_mismatch", der(ek_cert(OTHER_KEY)))
    refused("key_mismatch", der(ek_cert(RSA_EK_KEY)))
    refused("key_mismatch", key=RSA_EK_KEY)


def test_an_unknown_critical_extension_is_refused() -> None:
    unknown = x509.UnrecognizedExtension(UNKNOWN_OID, b"\x05\x00")
    refused("critical_extension", der(ek_cert(extra=(unknown, True))))
    # Before validity and chain: an expired certificate of an unknown CA says so too.
    stranger = ek_cert(extra=(unknown, True), signer=OTHER_KEY, not_after=T0 - DAY)
    refused("critical_extension", der(stranger))


def test_the_certificate_is_valid_from_not_before_to_not_after_inclusive() -> None:
    check(now=T0 - 5 * DAY)
    check(now=T0 + 5 * DAY)
    refused("expired", now=T0 - 5 * DAY - SECOND)
    refused("expired", now=T0 + 5 * DAY + SECOND)


def test_an_expired_certificate_is_expired_even_when_it_does_not_chain() -> None:
    refused("expired", der(ek_cert(signer=OTHER_KEY)), now=T0 + 6 * DAY)


# --- the path to a manufacturer root ----------------------------------------------------------


def test_a_ca_with_the_issuers_name_but_another_key_is_no_chain() -> None:
    refused("chain", der(ek_cert(signer=OTHER_KEY)))
    impostor = ca("EK Issuing CA", OTHER_KEY, issuer="EK Root CA", signer=ROOT_KEY)
    refused("chain", cas=[ROOT, impostor])
    forged_root = ca("EK Root CA", OTHER_KEY)  # the root's name, another key
    refused("chain", cas=[forged_root, ISSUER])


def test_an_issuing_ca_without_its_root_is_no_chain() -> None:
    refused("chain", cas=[ISSUER])
    refused("chain", cas=[ROOT])


def test_a_certificate_of_another_issuer_name_is_no_chain() -> None:
    refused("chain", der(ek_cert(issuer="Another CA", signer=ISSUER_KEY)))


def test_a_self_issued_ca_that_is_not_self_signed_is_no_root() -> None:
    not_self_signed = ca("EK Issuing CA", ISSUER_KEY, signer=OTHER_KEY)
    refused("chain", cas=[not_self_signed])


def test_a_decoy_before_the_real_issuer_does_not_stop_the_search() -> None:
    impostor = ca("EK Issuing CA", OTHER_KEY, issuer="EK Root CA", signer=ROOT_KEY)
    expired_twin = ca(
        "EK Issuing CA", ISSUER_KEY, issuer="EK Root CA", signer=ROOT_KEY, not_after=T0 - DAY
    )
    # The same issuing key certified by a root nobody trusts: a dead end to back out of.
    dead_end = ca("EK Issuing CA", ISSUER_KEY, issuer="Unknown Root", signer=OTHER_KEY)
    check(cas=[impostor, expired_twin, dead_end, ROOT, ISSUER])


def test_a_ca_without_basic_constraints_or_not_a_ca_cannot_issue() -> None:
    for is_ca in (None, False):
        issuer = ca("EK Issuing CA", ISSUER_KEY, issuer="EK Root CA", signer=ROOT_KEY, is_ca=is_ca)
        refused("chain", cas=[ROOT, issuer])
    root = ca("EK Root CA", ROOT_KEY, is_ca=False)
    refused("chain", der(ek_cert(issuer="EK Root CA", signer=ROOT_KEY)), cas=[root])


def test_a_ca_key_usage_must_allow_certificate_signing() -> None:
    no_sign = ca("EK Issuing CA", ISSUER_KEY, issuer="EK Root CA", signer=ROOT_KEY, key_usage=False)
    refused("chain", cas=[ROOT, no_sign])
    root_no_sign = ca("EK Root CA", ROOT_KEY, key_usage=False)
    refused("chain", cas=[root_no_sign, ISSUER])
    no_usage = ca("EK Issuing CA", ISSUER_KEY, issuer="EK Root CA", signer=ROOT_KEY, key_usage=None)
    check(cas=[ROOT, no_usage])


def test_every_ca_must_be_valid_now_bounds_included() -> None:
    issuer = ca(
        "EK Issuing CA", ISSUER_KEY, issuer="EK Root CA", signer=ROOT_KEY,
        not_before=T0 - SECOND, not_after=T0 + SECOND,
    )  # fmt: skip
    for now in (T0 - SECOND, T0, T0 + SECOND):
        check(cas=[ROOT, issuer], now=now)
    for now in (T0 - 2 * SECOND, T0 + 2 * SECOND):
        refused("chain", cas=[ROOT, issuer], now=now)
    root = ca("EK Root CA", ROOT_KEY, not_before=T0, not_after=T0 + SECOND)
    check(cas=[root, ISSUER], now=T0)
    check(cas=[root, ISSUER], now=T0 + SECOND)
    refused("chain", cas=[root, ISSUER], now=T0 - SECOND)
    refused("chain", cas=[root, ISSUER], now=T0 + 2 * SECOND)


def test_path_length_counts_the_cas_below() -> None:
    # ISSUER has pathLength 0 and issues the EK certificate directly: allowed.
    for length, ok in ((0, False), (1, True), (None, True)):
        root = ca("EK Root CA", ROOT_KEY, path_length=length)
        if ok:
            check(cas=[root, ISSUER])
        else:
            refused("chain", cas=[root, ISSUER])


def _chain(cas_count: int) -> tuple[bytes, list[x509.Certificate]]:
    """An EK certificate under ``cas_count`` CAs (root included) and those CAs."""
    keys = [ROOT_KEY] + [ec.generate_private_key(ec.SECP256R1()) for _ in range(cas_count - 1)]
    certs = [ROOT]
    for level in range(1, cas_count):
        certs.append(
            ca(f"CA {level}", keys[level], issuer=certs[-1].subject.rfc4514_string()[3:],
               signer=keys[level - 1])
        )  # fmt: skip
    leaf = ek_cert(issuer=certs[-1].subject.rfc4514_string()[3:], signer=keys[-1])
    return der(leaf), certs


def test_a_path_holds_at_most_max_depth_cas() -> None:
    assert MAX_EK_CHAIN_DEPTH == 4
    leaf, cas = _chain(MAX_EK_CHAIN_DEPTH)
    check(leaf, cas=cas)
    check(leaf, cas=cas[::-1])
    leaf, cas = _chain(MAX_EK_CHAIN_DEPTH + 1)
    refused("chain", leaf, cas=cas)


def test_cross_signed_cas_in_a_cycle_end_without_a_path() -> None:
    a_key, b_key = ISSUER_KEY, OTHER_KEY
    a = ca("EK Issuing CA", a_key, issuer="B", signer=b_key)
    b = ca("B", b_key, issuer="EK Issuing CA", signer=a_key)
    refused("chain", cas=[a, b])
    check(cas=[a, b, ISSUER, ROOT])
