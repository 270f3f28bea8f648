"""Helpers for the TPM integration tests (real swtpm, tpm2-tools)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from tpm2_pytss.constants import TPM2_ALG
from tpm2_pytss.types import TPMT_SIGNATURE

from trustfleet.keystore.tpm import ManufacturerCa, SwtpmInstance

BOOT_PCRS = (0, 4, 9, 10)
TOOL_TIMEOUT_S = 30


def vendor_certificates(ca: ManufacturerCa) -> list[x509.Certificate]:
    """The simulated TPM vendor's root and issuing CA certificates."""
    return [x509.load_pem_x509_certificate(p.read_bytes()) for p in ca.certificate_paths()]


def live_processes_mentioning(text: str) -> list[int]:
    """Pids of live (not zombie) processes whose command line contains ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            status = (entry / "status").read_text()
        except OSError:
            continue
        if "State:\tZ" in status:
            continue
        if text.encode() in cmdline:
            found.append(int(entry.name))
    return found


def run_tool(swtpm: SwtpmInstance, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a tpm2-tools command against ``swtpm`` (``TPM2TOOLS_TCTI``)."""
    env = {**os.environ, **swtpm.tools_env()}
    return subprocess.run(
        list(args), env=env, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False
    )


def boot_events(image: bytes) -> list[tuple[int, bytes, str]]:
    """The four boot measurements of docs/attestation.md for an image: (pcr, digest, component)."""
    return [
        (0, hashlib.sha256(b"trustfleet-sim-rom/sim-v1/1").digest(), "rom"),
        (4, hashlib.sha256(b"trustfleet-sim-boot/sim-v1/1").digest(), "bootloader"),
        (9, hashlib.sha256(image).digest(), "image"),
        (10, hashlib.sha256(b"trustfleet-agent/0.1.0").digest(), "agent"),
    ]


def verify_quote(pem: str, attest: bytes, signature: bytes) -> None:
    """Check a TPMT_SIGNATURE (ECDSA/SHA-256) over TPMS_ATTEST with the AK's SPKI PEM."""
    sig, used = TPMT_SIGNATURE.unmarshal(signature)
    assert used == len(signature)
    assert sig.sigAlg == TPM2_ALG.ECDSA
    assert sig.signature.ecdsa.hash == TPM2_ALG.SHA256
    der = encode_dss_signature(
        int.from_bytes(bytes(sig.signature.ecdsa.signatureR), "big"),
        int.from_bytes(bytes(sig.signature.ecdsa.signatureS), "big"),
    )
    key = serialization.load_pem_public_key(pem.encode())
    assert isinstance(key, ec.EllipticCurvePublicKey)
    key.verify(der, attest, ec.ECDSA(hashes.SHA256()))
