"""A device whose TPM is software: a P-256 AK, SHA-256 PCRs and quotes marshalled byte-exactly.

It boots like docs/attestation.md says (ROM -> PCR 0, bootloader -> 4, image -> 9, agent -> 10)
and can misbehave the ways the tamper table needs: a different image, a log that lies, a PCR
extended outside the log, a reboot. The verifier under test knows nothing of this class.
The attestation unit tests and benchmarks/attest.py use it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from trustfleet.attestation import (
    AttestationPolicy,
    Challenge,
    ClockInfo,
    DeviceAttestationState,
    EventLogEntry,
    ModelReference,
    ReferenceSet,
    ReleaseReference,
    encode_evidence,
    extend,
    make_challenge,
    measure_identity,
)
from trustfleet.attestation.eventlog import ZERO_PCR, composite_digest
from trustfleet.attestation.tpmstructs import (
    TPM_ALG_SHA256,
    TPM_GENERATED_VALUE,
    TPM_ST_ATTEST_QUOTE,
    PcrSelection,
    build_attest_quote,
    ecdsa_signature_from_der,
    qualified_name,
    tpm_name,
)

__all__ = [
    "AGENT_ID",
    "BOOTLOADER_ID",
    "EPOCH",
    "MODEL",
    "ONE_SECOND",
    "POLICY",
    "RELEASES",
    "ROM_ID",
    "TPM_RH_ENDORSEMENT",
    "SoftDevice",
    "challenge_at",
    "image_bytes",
    "references",
]

MODEL = "sim-v1"
ROM_ID = "trustfleet-sim-rom/sim-v1/1"
BOOTLOADER_ID = "trustfleet-sim-boot/sim-v1/1"
AGENT_ID = "trustfleet-agent/0.1.0"
RELEASES = ("1.0.0", "2.0.0", "3.0.0")
EPOCH = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
TPM_RH_ENDORSEMENT = b"\x40\x00\x00\x0b"


def image_bytes(version: str, model: str = MODEL) -> bytes:
    return f"image of {model} {version}\n".encode() * 64


def references() -> ReferenceSet:
    """Reference values of MODEL (every release) and of another model."""
    models = [
        ModelReference(
            model=m,
            rom=frozenset({measure_identity(ROM_ID.replace(MODEL, m))}),
            bootloader=frozenset({measure_identity(BOOTLOADER_ID.replace(MODEL, m))}),
            agent=frozenset({measure_identity(AGENT_ID)}),
        )
        for m in (MODEL, "other-v2")
    ]
    releases = [
        ReleaseReference(
            model=m, version=v, image_sha256=hashlib.sha256(image_bytes(v, m)).digest()
        )
        for m in (MODEL, "other-v2")
        for v in RELEASES
    ]
    return ReferenceSet.build(models=models, releases=releases)


@dataclass
class SoftDevice:
    """A simulated device with a software TPM (see the module docstring)."""

    device_id: str = "dev-soft000000001"
    ak: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    clock: int = 5_000
    reset_count: int = 7
    restart_count: int = 0
    firmware_version: int = 0x2019_0618_0000_0001
    pcrs: dict[int, bytes] = field(default_factory=dict)
    log: list[EventLogEntry] = field(default_factory=list)
    release: str = "2.0.0"

    @property
    def ak_name(self) -> bytes:
        public = self.ak.public_key().public_numbers()
        # Not a real TPMT_PUBLIC, but as unique per key as one.
        area = b"\x00\x23\x00\x0b" + public.x.to_bytes(32, "big") + public.y.to_bytes(32, "big")
        return tpm_name(area)

    @property
    def ak_qualified_name(self) -> bytes:
        return qualified_name(TPM_RH_ENDORSEMENT, self.ak_name)

    def state(self, **changes: object) -> DeviceAttestationState:
        """The service's record of this device (allowed: releases 1.0.0 and 2.0.0)."""
        base = DeviceAttestationState(
            device_id=self.device_id,
            model=MODEL,
            ak_public_key=self.ak.public_key(),
            allowed_releases=frozenset({"1.0.0", "2.0.0"}),
        )
        return replace(base, **changes)  # type: ignore[arg-type]  # test convenience

    def measure(
        self, pcr: int, component: str, digest: bytes, *, logged: bytes | None = None
    ) -> None:
        """Extend ``digest``; log ``logged`` (a lie) if given, nothing if it is ``b''``."""
        self.pcrs[pcr] = extend(self.pcrs.get(pcr, ZERO_PCR), digest)
        if logged != b"":
            self.log.append(
                EventLogEntry(
                    pcr=pcr,
                    type="EV_IPL" if component != "rom" else "EV_S_CRTM_VERSION",
                    digest=logged or digest,
                    component=component,
                    detail=f"{component} of {MODEL}",
                )
            )

    def boot(self, *, image: bytes | None = None, logged_image: bytes | None = None) -> None:
        """A TPM reset and a measured boot of ``image`` (the current release by default)."""
        self.reset_count += 1
        self.restart_count = 0
        self.pcrs = {}
        self.log = []
        self.measure(0, "rom", measure_identity(ROM_ID))
        self.measure(4, "bootloader", measure_identity(BOOTLOADER_ID))
        digest = hashlib.sha256(image if image is not None else image_bytes(self.release)).digest()
        self.measure(9, "image", digest, logged=logged_image)
        self.measure(10, "agent", measure_identity(AGENT_ID))

    def quote(
        self,
        nonce: bytes,
        *,
        pcrs: tuple[int, ...] = (0, 4, 9, 10),
        signer: ec.EllipticCurvePrivateKey | None = None,
        attest_type: int = TPM_ST_ATTEST_QUOTE,
        magic: int = TPM_GENERATED_VALUE,
    ) -> tuple[bytes, bytes]:
        """TPM2_Quote: the marshalled TPMS_ATTEST and TPMT_SIGNATURE."""
        self.clock += 1_250
        values = {p: self.pcrs.get(p, ZERO_PCR) for p in pcrs}
        key = signer or self.ak
        signer_name = (
            self.ak_qualified_name
            if signer is None
            else qualified_name(TPM_RH_ENDORSEMENT, b"\x00\x0b" + hashlib.sha256(b"other").digest())
        )
        attest = build_attest_quote(
            qualified_signer=signer_name,
            extra_data=nonce,
            clock_info=ClockInfo(
                clock=self.clock,
                reset_count=self.reset_count,
                restart_count=self.restart_count,
                safe=True,
            ),
            firmware_version=self.firmware_version,
            pcr_select=[PcrSelection(TPM_ALG_SHA256, tuple(sorted(pcrs)))],
            pcr_digest=composite_digest(values, sorted(pcrs)),
            magic=magic,
            attest_type=attest_type,
        )
        der = key.sign(attest, ec.ECDSA(hashes.SHA256()))
        return attest, ecdsa_signature_from_der(der)

    def evidence(self, challenge: Challenge, **quote_args: object) -> bytes:
        """The evidence payload answering ``challenge``."""
        attest, signature = self.quote(challenge.nonce, **quote_args)  # type: ignore[arg-type]
        return encode_evidence(
            challenge_id=challenge.id,
            quote=attest,
            signature=signature,
            eventlog=self.log,
            release=self.release,
            slot="a",
        )


def challenge_at(now: datetime, **changes: object) -> Challenge:
    """A fresh challenge issued at ``now``."""
    return replace(make_challenge(now=now), **changes)  # type: ignore[arg-type]


POLICY = AttestationPolicy()
ONE_SECOND = timedelta(seconds=1)
