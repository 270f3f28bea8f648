"""The simulated boot ROM and bootloader: A/B selection, boot counter, verified boot.

The boot ROM reads the fuses (``fuses.json``: the model and the SHA-256 of the boot key's SPKI
DER, written once by the factory) and checks that ``boot-key.pem`` is the fused key. The
bootloader then picks the slot from the environment (:mod:`.bootenv`): while an update is on
trial it increments ``bootcount`` and, once that exceeds ``bootlimit``, falls back to the other
slot (U-Boot's ``altbootcmd``). A slot boots only if it verifies:

* its ``release.json`` parses and is for the fused model;
* its ``boot.key_sha256`` is the fused hash;
* its image has the manifest's length and SHA-256;
* the boot signature (ECDSA P-256/SHA-256 over the image bytes) verifies with the fused key.

A slot that does not verify is not run and the other slot is tried (the environment is then
rewritten to the slot that booted). The image digest is measured into PCR 9 through a
:class:`Measurer` (a TPM on hardware and with the attestation work; a no-op by default).

``cryptography`` is imported only while verifying, so the agent's resident memory stays low.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from trustfleet.agent.platform._files import read_json
from trustfleet.agent.platform.bootenv import BootEnv, BootEnvStore, Slot, other_slot
from trustfleet.agent.platform.slots import Slots, sha256_file
from trustfleet.errors import InvalidInput, VerificationFailed

__all__ = [
    "BOOT_KEY_FILE",
    "FUSES_FILE",
    "IMAGE_PCR",
    "BootResult",
    "Fuses",
    "Measurer",
    "NoMeasurer",
    "SlotVerdict",
    "boot",
    "boot_result_from",
    "fused_boot_key",
    "read_fuses",
    "verify_slot",
]

logger = logging.getLogger(__name__)

FUSES_FILE = "fuses.json"
BOOT_KEY_FILE = "boot-key.pem"
IMAGE_PCR = 9
_MAX_FUSES_BYTES = 4096
_MAX_KEY_BYTES = 8192
_MAX_MANIFEST_BYTES = 64 * 1024
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Fuses:
    """What the factory fused into the device (one-time programmable)."""

    model: str
    boot_key_sha256: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BootResult:
    """What the bootloader booted.

    Attributes:
        slot: The slot that runs.
        version: Its release version.
        fell_back: Whether this is not the slot the environment asked for (trial boots
            exhausted, or that slot failed verification).
        reason: Why it fell back ("" otherwise).
    """

    slot: Slot
    version: str
    fell_back: bool = False
    reason: str = ""

    def to_document(self) -> dict[str, object]:
        """The JSON form (``trustfleet-agent boot --json``)."""
        return {
            "slot": self.slot,
            "version": self.version,
            "fell_back": self.fell_back,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class SlotVerdict:
    """Whether a slot verifies; its version and image digest when it does."""

    slot: Slot
    ok: bool
    version: str = ""
    image_sha256: str = ""
    reason: str = ""


class Measurer(Protocol):
    """Where the boot chain records what it runs (a TPM's PCRs on hardware)."""

    def extend(self, pcr: int, component: str, digest: bytes, detail: str) -> None:
        """Extend ``pcr`` with ``digest`` (SHA-256) of ``component``; ``detail`` for the log."""
        ...


class NoMeasurer:
    """A :class:`Measurer` that records nothing (no TPM attached)."""

    def extend(self, pcr: int, component: str, digest: bytes, detail: str) -> None:
        """Do nothing."""


def read_fuses(directory: Path) -> Fuses | None:
    """The device's fuses, or None for a device without a boot chain (no ``fuses.json``).

    Raises:
        VerificationFailed: The file exists but is not valid fuses (code ``boot.fuses``).
    """
    path = directory / FUSES_FILE
    if not path.exists():
        return None
    doc = read_json(path, max_bytes=_MAX_FUSES_BYTES) or {}
    model, digest = doc.get("model"), doc.get("boot_key_sha256")
    if not isinstance(model, str) or not isinstance(digest, str) or not _HEX64.fullmatch(digest):
        raise VerificationFailed(
            f"{path} is not valid fuses",
            hint="the factory writes fuses.json once",
            code="boot.fuses",
        )
    return Fuses(model=model, boot_key_sha256=digest)


def verify_slot(slots: Slots, slot: Slot, *, fuses: Fuses, boot_key_pem: bytes) -> SlotVerdict:
    """Verified boot of one slot (see the module docstring); never raises for a bad slot."""
    checked = _check_slot(slots, slot, fuses=fuses, boot_key_pem=boot_key_pem)
    if isinstance(checked, str):
        return SlotVerdict(slot=slot, ok=False, reason=checked)
    version, digest = checked
    return SlotVerdict(slot=slot, ok=True, version=version, image_sha256=digest)


def _check_slot(
    slots: Slots, slot: Slot, *, fuses: Fuses, boot_key_pem: bytes
) -> str | tuple[str, str]:
    """The slot's (version, image SHA-256), or why it does not verify."""
    from trustfleet.ota.manifest import parse_manifest  # noqa: PLC0415

    data = slots.manifest_bytes(slot, max_bytes=_MAX_MANIFEST_BYTES)
    if data is None:
        return "no release.json (empty or incomplete slot)"
    try:
        manifest = parse_manifest(data, max_bytes=_MAX_MANIFEST_BYTES)
    except InvalidInput as exc:
        return exc.message
    if manifest.model != fuses.model:
        return f"release is for model '{manifest.model}', not '{fuses.model}'"
    if manifest.boot.key_sha256 != fuses.boot_key_sha256:
        return "release names a boot key that is not the fused one"
    try:
        length, digest = sha256_file(slots.image_path(slot))
    except OSError:
        length, digest = -1, ""
    problem = ""
    if length != manifest.image.length or digest != manifest.image.sha256:
        problem = "image is missing or does not match the release's length and SHA-256"
    elif not _signature_ok(boot_key_pem, manifest.boot.signature, bytes.fromhex(digest)):
        problem = "boot signature does not verify"
    return problem or (manifest.version, digest)


def _signature_ok(key_pem: bytes, signature: bytes, digest: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec, utils  # noqa: PLC0415

    key = serialization.load_pem_public_key(key_pem)
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        return False
    try:
        key.verify(signature, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    except InvalidSignature:
        return False
    return True


def fused_boot_key(directory: Path, fuses: Fuses) -> bytes:
    """The boot key PEM, checked against the fused hash (the boot ROM's first step).

    Raises:
        VerificationFailed: The key is missing or is not the fused key (code ``boot.key``).
    """
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    path = directory / BOOT_KEY_FILE
    problem = VerificationFailed(
        f"{path} is missing or is not the fused boot key",
        hint="the device cannot boot: re-provision it at the factory",
        code="boot.key",
    )
    try:
        pem = path.read_bytes()[: _MAX_KEY_BYTES + 1]
        key = serialization.load_pem_public_key(pem)
    except (OSError, ValueError) as exc:
        raise problem from exc
    spki = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if len(pem) > _MAX_KEY_BYTES or hashlib.sha256(spki).hexdigest() != fuses.boot_key_sha256:
        raise problem
    return pem


def boot(
    directory: Path,
    *,
    env_store: BootEnvStore,
    slots: Slots,
    measurer: Measurer | None = None,
) -> BootResult:
    """Boot the device once: count the trial, pick a slot, verify it, measure it.

    Args:
        directory: The device folder (``fuses.json``, ``boot-key.pem``).
        env_store: The boot environment.
        slots: The device's slots.
        measurer: Where the booted image is measured (PCR 9).

    Returns:
        The slot that boots.

    Raises:
        VerificationFailed: No fuses, a boot key that is not the fused one, or no slot that
            verifies (codes ``boot.fuses``, ``boot.key``, ``boot.no_slot``).
    """
    fuses = read_fuses(directory)
    if fuses is None:
        raise VerificationFailed(
            f"{directory} has no {FUSES_FILE}",
            hint="the device has no boot chain",
            code="boot.fuses",
        )
    key_pem = fused_boot_key(directory, fuses)
    env, fell_back, reason = _count_trial(env_store)
    verdicts: list[SlotVerdict] = []
    for slot in (env.boot_slot, other_slot(env.boot_slot)):
        verdict = verify_slot(slots, slot, fuses=fuses, boot_key_pem=key_pem)
        if verdict.ok:
            return _booted(
                verdict,
                env=env,
                env_store=env_store,
                fell_back=fell_back,
                reason=reason,
                refused=verdicts,
                measurer=measurer,
            )
        logger.warning("slot %s does not verify: %s", slot, verdict.reason)
        verdicts.append(verdict)
    raise VerificationFailed(
        "no bootable slot: " + "; ".join(f"{v.slot}: {v.reason}" for v in verdicts),
        hint="the device is bricked: re-provision it at the factory",
        code="boot.no_slot",
    )


def _count_trial(env_store: BootEnvStore) -> tuple[BootEnv, bool, str]:
    env = env_store.read()
    if not env.upgrade_available:
        return env, False, ""
    env = replace(env, bootcount=env.bootcount + 1)
    env_store.write(env)
    if env.bootcount <= env.bootlimit:
        return env, False, ""
    reason = f"slot {env.boot_slot} failed {env.bootlimit} trial boot(s)"
    logger.warning("%s: falling back (altbootcmd)", reason)
    env = BootEnv(boot_slot=other_slot(env.boot_slot), bootlimit=env.bootlimit)
    env_store.write(env)
    return env, True, reason


def _booted(
    verdict: SlotVerdict,
    *,
    env: BootEnv,
    env_store: BootEnvStore,
    fell_back: bool,
    reason: str,
    refused: list[SlotVerdict],
    measurer: Measurer | None,
) -> BootResult:
    if refused:  # the environment's slot did not verify: make the fallback stick
        env_store.write(BootEnv(boot_slot=verdict.slot, bootlimit=env.bootlimit))
        fell_back = True
        reason = f"slot {refused[0].slot} does not verify: {refused[0].reason}"
    if measurer is not None:
        detail = f"slot {verdict.slot} release {verdict.version}"
        measurer.extend(IMAGE_PCR, "image", bytes.fromhex(verdict.image_sha256), detail)
    return BootResult(
        slot=verdict.slot, version=verdict.version, fell_back=fell_back, reason=reason
    )


def boot_result_from(doc: object) -> BootResult:
    """Parse :meth:`BootResult.to_document` output (from a boot in a child process).

    Raises:
        InvalidInput: Not a boot result.
    """
    if isinstance(doc, dict) and doc.get("slot") in ("a", "b"):
        version, fell, why = doc.get("version"), doc.get("fell_back"), doc.get("reason")
        if isinstance(version, str) and isinstance(fell, bool) and isinstance(why, str):
            slot: Slot = "a" if doc["slot"] == "a" else "b"
            return BootResult(slot=slot, version=version, fell_back=fell, reason=why)
    raise InvalidInput("not a boot result", code="boot.result")
