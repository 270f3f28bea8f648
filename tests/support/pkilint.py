"""pkilint as a library: lint certificates, CRLs and OCSP responses in tests.

Each function returns the findings of severity WARNING or worse (FATAL, ERROR, WARNING) as
readable strings ``"<severity> <code> @ <node path>: <message>"``; an empty list means clean.
NOTICE and INFO findings are not returned.

The validators are wired as pkilint's own ``lint_pkix_cert``, ``lint_crl -t CRL -p PKIX`` and
``lint_ocsp_response`` command-line tools wire them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pkilint import loader, pkix
from pkilint.pkix import certificate, crl, extension, name, ocsp
from pkilint.validation import ValidationFindingSeverity

__all__ = [
    "ACCEPTED_FINDINGS",
    "AcceptedFinding",
    "all_findings",
    "lint_certificate",
    "lint_crl",
    "lint_ocsp_response",
]


@dataclass(frozen=True)
class AcceptedFinding:
    """A finding that is accepted, narrowly: its code and a pattern its message must match."""

    code: str
    message: re.Pattern[str]
    reason: str


ACCEPTED_FINDINGS: tuple[AcceptedFinding, ...] = (
    AcceptedFinding(
        code="pkix.invalid_uri_syntax",
        message=re.compile(r'Invalid URI syntax: "urn:trustfleet:device:[a-z0-9-]{8,64}"'),
        reason=(
            "pkilint checks SAN URIs with validators.url, which accepts only URLs with a host. "
            "The device URI urn:trustfleet:device:<id> is an absolute RFC 3986 URI with a "
            "scheme and a scheme-specific part and no authority, which is what RFC 5280 "
            "4.2.1.6 asks for (the host rule applies only to URIs with an authority). Only "
            "exactly this device URN is accepted; any other URI finding still fails."
        ),
    ),
    AcceptedFinding(
        code="pkix.invalid_domain_name_syntax",
        message=re.compile(r'Invalid domain name syntax: "localhost"'),
        reason=(
            "A home made for loopback names its servers 'localhost'. pkilint checks names with "
            "the validators package, which wants a dot; 'localhost' is a valid RFC 1034 name."
        ),
    ),
    AcceptedFinding(
        code="pkix.invalid_uri_syntax",
        message=re.compile(
            r'Invalid URI syntax: "https://localhost:\d+/(crl/(root|manufacturing|device)\.crl|ocsp)"'
        ),
        reason=(
            "The same check on the CRL and OCSP URLs of a loopback home; they are valid RFC 3986 "
            "URIs. A home with a public name (server init --dns) has no such finding."
        ),
    ),
)
"""The one allow-list: findings accepted with the reason they are false positives."""


def lint_certificate(der: bytes) -> list[str]:
    """Lint a DER certificate against RFC 5280; return the WARNING-or-worse findings."""
    validator = certificate.create_pkix_certificate_validator_container(
        certificate.create_decoding_validators(
            name.ATTRIBUTE_TYPE_MAPPINGS, extension.EXTENSION_MAPPINGS
        ),
        [
            certificate.create_issuer_validator_container([]),
            certificate.create_validity_validator_container(),
            certificate.create_subject_validator_container([]),
            certificate.create_extensions_validator_container([]),
            certificate.create_spki_validator_container([]),
        ],
    )
    document = loader.load_der_certificate(der, "certificate")
    return _findings(validator.validate(document.root))


def lint_crl(der: bytes) -> list[str]:
    """Lint a DER CRL against RFC 5280 (as a CRL, not an ARL); return WARNING-or-worse."""
    validator = crl.create_pkix_crl_validator_container(
        _pkix_decoders(),
        [
            crl.create_issuer_validator_container([]),
            crl.create_validity_validator_container([]),
            crl.create_extensions_validator_container([]),
        ],
    )
    document = loader.load_der_crl(der, "crl")
    return _findings(validator.validate(document.root))


def lint_ocsp_response(der: bytes) -> list[str]:
    """Lint a DER OCSP response against RFC 6960; return the WARNING-or-worse findings."""
    validator = ocsp.create_pkix_ocsp_response_validator_container(
        [ocsp.create_response_decoder(), *_pkix_decoders()],
        [],
    )
    document = loader.load_der_ocsp_response(der, "ocsp-response")
    return _findings(validator.validate(document.root))


def _pkix_decoders() -> list[Any]:
    """The decoders of names and extensions every RFC 5280 structure needs."""
    return [
        pkix.create_attribute_decoder(name.ATTRIBUTE_TYPE_MAPPINGS),
        pkix.create_extension_decoder(extension.EXTENSION_MAPPINGS),
    ]


def all_findings(results: Iterable[Any]) -> list[str]:
    """Every finding of every severity (validator results in), for debugging."""
    return [
        _describe(result, description)
        for result in results
        for description in result.finding_descriptions
    ]


def _findings(results: Iterable[Any]) -> list[str]:
    return [
        _describe(result, description)
        for result in results
        for description in result.finding_descriptions
        if description.finding.severity <= ValidationFindingSeverity.WARNING
        and not _is_accepted(description)
    ]


def _is_accepted(description: Any) -> bool:
    message = description.message or ""
    return any(
        accepted.code == description.finding.code and accepted.message.fullmatch(message)
        for accepted in ACCEPTED_FINDINGS
    )


def _describe(result: Any, description: Any) -> str:
    finding = description.finding
    text = f"{finding.severity} {finding.code} @ {result.node.path}"
    return f"{text}: {description.message}" if description.message else text
