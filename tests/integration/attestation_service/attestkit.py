"""Helpers of the attestation service tests: a real swtpm playing the device's TPM.

The device side (the agent's attester and the measuring boot chain) is built elsewhere; here
the test drives the TPM directly as docs/attestation.md says the boot chain does: the ROM
measures itself (PCR 0) and the bootloader (PCR 4), the bootloader the image (PCR 9), the
image the agent (PCR 10); the attester quotes PCRs 0, 4, 9, 10 with the challenge's nonce.
"""

from __future__ import annotations

import hashlib
import json

from trustfleet import __version__
from trustfleet.attestation import EventLogEntry, encode_evidence, measure_identity
from trustfleet.keystore.tpm import ManufacturerCa, Tpm

MODEL = "sim-v1"


def vendor_bundle(ca: ManufacturerCa) -> bytes:
    """The simulated TPM vendor's CA certificates as one PEM bundle."""
    return b"".join(path.read_bytes() for path in ca.certificate_paths())


def boot(tpm: Tpm, image: bytes, *, model: str = MODEL) -> list[EventLogEntry]:
    """Measure a boot of ``image`` into the TPM; the event log of it."""
    events = [
        EventLogEntry(
            pcr=0,
            type="EV_S_CRTM_VERSION",
            component="rom",
            digest=measure_identity(f"trustfleet-sim-rom/{model}/1"),
        ),
        EventLogEntry(
            pcr=4,
            type="EV_IPL",
            component="bootloader",
            digest=measure_identity(f"trustfleet-sim-boot/{model}/1"),
        ),
        EventLogEntry(
            pcr=9,
            type="EV_IPL",
            component="image",
            digest=hashlib.sha256(image).digest(),
            detail="slot a",
        ),
        EventLogEntry(
            pcr=10,
            type="EV_IPL",
            component="agent",
            digest=measure_identity(f"trustfleet-agent/{__version__}"),
        ),
    ]
    for event in events:
        tpm.pcr_extend(event.pcr, event.digest)
    return events


def evidence(
    tpm: Tpm, challenge: dict[str, object], events: list[EventLogEntry], *, release: str
) -> bytes:
    """The evidence payload answering a challenge (its decoded MQTT JSON)."""
    import base64

    nonce = base64.b64decode(str(challenge["nonce"]))
    pcrs = [int(p) for p in challenge["pcrs"]]  # type: ignore[attr-defined]
    attest, signature = tpm.quote(nonce, pcrs)
    return encode_evidence(
        challenge_id=str(challenge["id"]),
        quote=attest,
        signature=signature,
        eventlog=events,
        release=release,
        slot="a",
    )


def manifest(version: str, image: bytes, *, model: str = MODEL) -> bytes:
    """A release manifest with the image measurement (docs/ota.md)."""
    digest = hashlib.sha256(image).hexdigest()
    return json.dumps(
        {
            "schema": "trustfleet.release/1",
            "model": model,
            "version": version,
            "min_version": "0.0.0",
            "image": {
                "target": f"{model}/{version}/image.bin",
                "length": len(image),
                "sha256": digest,
            },
            "measurements": [{"pcr": 9, "component": "image", "sha256": digest}],
        },
        sort_keys=True,
    ).encode()


def add_release(tx: object, version: str, image: bytes, now: object) -> None:
    """Record a published release (what 'trustfleet release publish' stores)."""
    tx.releases.add(  # type: ignore[attr-defined]
        model=MODEL,
        version=version,
        min_version="0.0.0",
        image_sha256=hashlib.sha256(image).hexdigest(),
        image_length=len(image),
        manifest=manifest(version, image),
        targets_version=1,
        now=now,
    )
