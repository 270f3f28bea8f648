"""The ``decommission`` command: wipe the device's keys and sealed data, return signed evidence.

The agent's MQTT session is up (its TLS handshake already used the identity key), so the wipe
runs in a child process (``python -m trustfleet.agent wipe``), which logs in to the token
through python-pkcs11 without disturbing awscrt's session (docs/lifecycle.md, "Decommission
and wipe evidence"). In order, the child:

1. reads the TPM's clock (TPM2_ReadClock), evicts the persistent AK (TPM2_EvictControl),
   flushes transient objects (TPM2_FlushContext) and clears the owner hierarchy with the
   lockout authorization (TPM2_Clear: a new storage primary seed, so every blob sealed under
   the SRK, copies included, is undecryptable); a platform that refuses TPM2_Clear (lockout
   authorization set, ``disableClear``) skips it and says so in the evidence;
2. crypto-erases the sealed state: the sealed data-key blobs and ``state.enc`` are overwritten
   with random bytes, synced and removed (NIST SP 800-88 Rev. 1 cryptographic erase);
3. destroys every key object in the token but the identity key;
4. signs the evidence with the identity key, then destroys it;
5. writes ``decommissioned.json`` in the device folder: the agent never runs there again.

The parent publishes the evidence as the command's result on the session it has, waits for the
PUBACK (the agent's shutdown flush) and stops.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from trustfleet.agent.platform._files import write_atomic
from trustfleet.errors import Conflict, InvalidInput, TrustFleetError, Unavailable

if TYPE_CHECKING:
    from trustfleet.agent._messages import Command
    from trustfleet.agent.settings import DeviceSettings
    from trustfleet.keystore import TokenSession

__all__ = [
    "MARKER",
    "answer_decommission",
    "refuse_if_decommissioned",
    "wipe_main",
]

logger = logging.getLogger(__name__)

MARKER: Final = "decommissioned.json"
"""In the device folder once it wiped itself; the agent refuses to run there."""
MAX_EVIDENCE_BYTES: Final = 16 * 1024
CHILD_TIMEOUT_S: Final = 60.0
_NONCE: Final = re.compile(r"[0-9a-f]{32,128}")
_SEALED_FILES: Final = ("tpm/datakey.sealed", "tpm/datakey.next.sealed", "state.enc")


def refuse_if_decommissioned(directory: Path) -> None:
    """Stop here if the device folder was wiped.

    Raises:
        Conflict: It was (code ``agent.decommissioned``).
    """
    if (directory / MARKER).exists():
        raise Conflict(
            f"device folder {directory} was decommissioned (its keys are destroyed): "
            "the agent will not run",
            hint="return the hardware to service through the factory ('trustfleet factory "
            "provision --reprovision FOLDER' gives it a new identity)",
            code="agent.decommissioned",
        )


class _Agent(Protocol):
    settings: DeviceSettings
    stop: threading.Event

    def before_wipe(self) -> None: ...


def answer_decommission(
    agent: _Agent, command: Command, *, wipe: Callable[[Path, str], Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    """Wipe (in a child process) and answer with the evidence; the agent stops after it.

    Args:
        agent: The running agent (its settings, its stop event, ``before_wipe``).
        command: The ``decommission`` command (``{"nonce": hex}``).
        wipe: How to wipe (default: :func:`wipe_in_child`).

    Returns:
        The ``cmd/result`` document: ``{"id", "ok": true, "result": {"evidence": …}}``, or
        ``ok`` false with the reason (nothing destroyed when the nonce is malformed).
    """
    nonce = command.args.get("nonce")
    if not isinstance(nonce, str) or not _NONCE.fullmatch(nonce):
        return {"id": command.id, "ok": False, "result": {},
                "error": "decommission needs a hex 'nonce' (16 to 64 bytes)"}  # fmt: skip
    agent.before_wipe()
    directory = agent.settings.directory
    try:
        evidence = (wipe or wipe_in_child)(directory, nonce)
    except TrustFleetError as exc:
        logger.error("decommission failed: %s", exc.one_line())
        if (directory / MARKER).exists():
            agent.stop.set()
        return {"id": command.id, "ok": False, "result": {}, "error": exc.one_line()[:300]}
    logger.warning("device wiped: publishing the evidence, then stopping for good")
    agent.stop.set()  # the shutdown flush waits for the result's PUBACK
    return {"id": command.id, "ok": True, "result": {"evidence": dict(evidence)}}


def wipe_in_child(directory: Path, nonce: str, *, timeout_s: float = CHILD_TIMEOUT_S) -> Any:
    """Run :func:`wipe_main` in ``python -m trustfleet.agent wipe``; the evidence.

    Raises:
        Unavailable: The child failed, timed out or answered nonsense.
    """
    args = [sys.executable, "-m", "trustfleet.agent", "wipe", "--device", str(directory)]
    stdin = json.dumps({"nonce": nonce}).encode()
    try:
        proc = subprocess.run(args, input=stdin, capture_output=True, timeout=timeout_s,
                              check=False)  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise Unavailable("the wipe did not finish in time", code="decommission.timeout") from exc
    out = proc.stdout.strip()
    if proc.returncode != 0 or not out or len(out) > MAX_EVIDENCE_BYTES:
        why = (proc.stderr.decode("utf-8", "replace").strip().splitlines() or ["no output"])[-1]
        raise Unavailable(f"the wipe failed: {why[:300]}", code="decommission.failed")
    try:
        return json.loads(out)
    except ValueError as exc:
        raise Unavailable("the wipe answered no JSON", code="decommission.failed") from exc


def _wipe_tpm(directory: Path) -> tuple[dict[str, Any] | None, dict[str, str] | None, list[str]]:
    """Clock, evicted AK and ``["tpm-clear"]`` if the TPM was cleared (Nones without a TPM)."""
    from trustfleet.agent._tpmhooks import powered  # noqa: PLC0415
    from trustfleet.agent.platform.measured_boot import DeviceTpm  # noqa: PLC0415

    if not powered(directory):
        return None, None, []
    with DeviceTpm(directory).open() as tpm:
        clock = tpm.clock()
        evicted = tpm.evict_ak()
        tpm.flush_transient()
        cleared: list[str] = []
        try:
            tpm.clear()
            cleared.append("tpm-clear")
        except Unavailable as exc:  # the platform keeps the owner hierarchy: say so
            logger.warning("TPM2_Clear refused: %s", exc.one_line())
    ak = None if evicted is None else {"handle": f"0x{evicted.handle:08x}",
                                        "name": evicted.name.hex()}  # fmt: skip
    facts = {"clock": clock.clock_ms, "reset_count": clock.reset_count,
             "restart_count": clock.restart_count, "safe": clock.safe}  # fmt: skip
    return facts, ak, cleared


def _erase_file(path: Path) -> bool:
    """Overwrite with random bytes, sync, remove; whether there was a file."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    with path.open("r+b") as handle:
        handle.write(os.urandom(size))
        handle.flush()
        os.fsync(handle.fileno())
    path.unlink()
    return True


def _describe_keys(token: TokenSession) -> list[dict[str, str]]:
    from trustfleet.attestation.wipe import spki_sha256  # noqa: PLC0415
    from trustfleet.keystore import private_key_labels  # noqa: PLC0415

    described = []
    for label in sorted(set(private_key_labels(token))):
        try:
            spki = spki_sha256(token.ec_private_key(label=label).public_key())
        except TrustFleetError:
            spki = "0"  # not an EC pair: named, without a fingerprint
        described.append({"label": label, "spki_sha256": spki})
    return described


def _sign_and_destroy(
    token: TokenSession, identity_label: str, document: dict[str, Any]
) -> dict[str, Any]:
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415

    from trustfleet.attestation.wipe import signature_hash, signing_input  # noqa: PLC0415
    from trustfleet.keystore import (  # noqa: PLC0415
        destroy_key_objects,
        destroy_key_pair,
        private_key_labels,
    )

    for label in set(private_key_labels(token)) - {identity_label}:
        destroy_key_pair(token, label)
    identity = token.ec_private_key(label=identity_label)
    curve = identity.public_key().curve
    signature = identity.sign(signing_input(document), ec.ECDSA(signature_hash(curve)))
    destroy_key_objects(token)  # the identity key, and anything left
    return {**document, "signature": base64.b64encode(signature).decode("ascii")}


def wipe_main(directory: Path, nonce: str, *, now: datetime) -> dict[str, Any]:
    """What ``python -m trustfleet.agent wipe`` does (see the module docstring).

    Raises:
        InvalidInput: The nonce is malformed.
        TrustFleetError: The token or the TPM failed (what was destroyed stays destroyed).
    """
    from trustfleet.agent._tls import token_key  # noqa: PLC0415
    from trustfleet.agent.settings import load_device_settings  # noqa: PLC0415
    from trustfleet.attestation.wipe import unsigned_evidence  # noqa: PLC0415
    from trustfleet.keystore import open_token  # noqa: PLC0415

    if not _NONCE.fullmatch(nonce):
        raise InvalidInput("the nonce must be 32 to 128 hex digits", code="decommission.nonce")
    settings = load_device_settings(directory)
    key = token_key(settings)
    clock, ak, sealed = _wipe_tpm(directory)
    sealed += [name for name in _SEALED_FILES if _erase_file(directory / name)]
    with open_token(module=key.module, label=key.token, pin=key.pin, conf=key.conf) as token:
        document = unsigned_evidence(
            device_id=settings.device.id, nonce=nonce, agent_time=now, tpm_clock=clock,
            token_keys=_describe_keys(token), ak=ak, sealed=sealed,
        )  # fmt: skip
        evidence = _sign_and_destroy(token, key.label, document)
    marker = json.dumps({"decommissioned_at": now.isoformat(), "evidence": evidence})
    write_atomic(directory / MARKER, marker.encode() + b"\n")
    return evidence


def run_wipe_command(directory: Path, *, now: datetime) -> int:
    """The child's entry: the nonce (``{"nonce"}``) on stdin, the evidence on stdout."""
    raw = sys.stdin.buffer.read(1024)
    try:
        nonce = json.loads(raw).get("nonce", "")
    except (ValueError, AttributeError) as exc:
        raise InvalidInput('the wipe reads {"nonce": hex} on stdin') from exc
    evidence = wipe_main(directory, str(nonce), now=now)
    sys.stdout.write(json.dumps(evidence, sort_keys=True) + "\n")
    return 0
