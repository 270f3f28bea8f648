"""AK enrollment, device side: bind the TPM's attestation key to this device at the service.

After EST enrollment (or at the first start with an LDevID and no enrolled AK) the device
sends its EK public area, EK certificate, AK public area and AK name to
``POST /attest/v1/ak`` over mutual TLS with its LDevID (the key stays in its token: awscrt, as
for EST). The service answers a credential made for that EK and AK name (MakeCredential);
only this TPM can recover its secret (``Tpm.activate_credential``), which the device sends to
``POST /attest/v1/ak/activate``. Success is recorded in ``DEVDIR/tpm/ak-enrolled.json`` so it
runs once. Bodies: docs/attestation.md, "AK enrollment".

tpm2-pytss and awscrt's HTTP client are loaded only here; the agent runs this in a child
process (``python -m trustfleet.agent ak-enroll``, :func:`enroll_ak_in_child`).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from trustfleet.agent.platform._files import read_json, write_json
from trustfleet.agent.platform.measured_boot import TPM_FOLDER, DeviceTpm
from trustfleet.errors import (
    Conflict,
    InvalidInput,
    PermissionDenied,
    TrustFleetError,
    Unavailable,
    VerificationFailed,
)

if TYPE_CHECKING:
    from trustfleet.agent.settings import DeviceSettings
    from trustfleet.keystore.tpm import Tpm

__all__ = [
    "ENROLLED_FILE",
    "AkEnrollment",
    "ak_enrolled",
    "enroll_ak",
    "enroll_ak_in_child",
]

logger = logging.getLogger(__name__)

ENROLLED_FILE: Final = "ak-enrolled.json"
MAX_ANSWER_BYTES: Final = 16 * 1024
"""The bound on the service's answers (a credential is a few hundred bytes)."""
ENROLL_PATH: Final = "/attest/v1/ak"
ACTIVATE_PATH: Final = "/attest/v1/ak/activate"
CHILD_TIMEOUT_S: Final = 120.0
_MAX_FIELD_CHARS: Final = 4096


@dataclass(frozen=True, slots=True, kw_only=True)
class AkEnrollment:
    """A completed AK enrollment (what ``ak-enrolled.json`` records)."""

    device_id: str
    ak_name: str
    enrollment_id: str
    activated_at: str


def ak_enrolled(directory: Path) -> bool:
    """Whether this device's AK was enrolled (recorded by :func:`enroll_ak`)."""
    return read_json(directory / TPM_FOLDER / ENROLLED_FILE, max_bytes=4096) is not None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def enroll_ak(settings: DeviceSettings, *, tpm: Tpm, now: datetime) -> AkEnrollment:
    """Run both steps of AK enrollment against the service and record the success.

    Args:
        settings: The device's settings (``[server]``, ``[identity]``).
        tpm: A connection to the device's powered-on TPM.
        now: The current time (recorded).

    Raises:
        InvalidInput: The device has no LDevID yet, or the service's answer is malformed.
        PermissionDenied: The service refused (not enrolled, quarantined, activation).
        VerificationFailed: The service refused the EK certificate or the AK, or the
            credential was not made for this TPM.
        Conflict: The service holds an AK of another TPM for this device.
        Unavailable: The service or the TPM cannot be reached.
    """
    device = DeviceTpm(settings.directory)
    ak = device.ensure_ak(tpm)
    request = {
        "ek_public": _b64(tpm.ek_public()),
        "ek_certificate": _b64(tpm.ek_certificate()),
        "ak_public": _b64(ak.public),
        "ak_name": _b64(ak.name),
    }
    answer = _exchange(settings, ENROLL_PATH, request)
    enrollment_id = _text(answer, "id")
    secret = tpm.activate_credential(
        _bytes(answer, "credential_blob"), _bytes(answer, "encrypted_secret")
    )
    done = _exchange(settings, ACTIVATE_PATH, {"id": enrollment_id, "secret": _b64(secret)})
    record = AkEnrollment(
        device_id=settings.device.id,
        ak_name=ak.name.hex(),
        enrollment_id=enrollment_id,
        activated_at=str(done.get("activated_at") or now.isoformat())[:64],
    )
    write_json(device.state_dir / ENROLLED_FILE, {
        "device_id": record.device_id, "ak_name": record.ak_name,
        "enrollment": record.enrollment_id, "activated_at": record.activated_at,
    })  # fmt: skip
    logger.info("attestation key enrolled (name %s)", record.ak_name[:16])
    return record


def enroll_ak_in_child(directory: Path, *, timeout_s: float = CHILD_TIMEOUT_S) -> None:
    """Run ``python -m trustfleet.agent ak-enroll`` (tpm2-pytss stays out of this process).

    Raises:
        Unavailable: The child failed or timed out (its last error line is the message).
    """
    args = [sys.executable, "-m", "trustfleet.agent", "ak-enroll", "--device", str(directory)]
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s,
                              check=False)  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise Unavailable("AK enrollment did not finish in time", code="attest.ak.timeout") from exc
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or ["no output"])[-1].removeprefix("error: ")
        raise Unavailable(f"AK enrollment failed: {why[:300]}", code="attest.ak.failed")


def _text(answer: dict[str, Any], key: str) -> str:
    value = answer.get(key)
    if not isinstance(value, str) or not 0 < len(value) <= _MAX_FIELD_CHARS:
        raise InvalidInput(f"the service's answer has no valid '{key}'", code="attest.ak.answer")
    return value


def _bytes(answer: dict[str, Any], key: str) -> bytes:
    try:
        return binascii.a2b_base64(_text(answer, key).encode("ascii"), strict_mode=True)
    except (UnicodeEncodeError, binascii.Error) as exc:
        raise InvalidInput(f"'{key}' in the service's answer is not base64",
                           code="attest.ak.answer") from exc  # fmt: skip


_REFUSALS: Final[dict[int, type[TrustFleetError]]] = {
    400: InvalidInput, 401: PermissionDenied, 403: PermissionDenied, 409: Conflict,
    422: VerificationFailed,
}  # fmt: skip


def _exchange(settings: DeviceSettings, path: str, body: dict[str, str]) -> dict[str, Any]:
    status, code, data = _post_json(settings, path, json.dumps(body).encode("utf-8"))
    if status != 200:
        reason = data.decode("utf-8", "replace").strip()[:300]
        error = _REFUSALS.get(status, Unavailable if status >= 500 or not status else InvalidInput)
        raise error(f"the service refused {path} ({status} {code}): {reason}",
                    hint="see the service's attestation events for this device",
                    code="attest.ak.refused")  # fmt: skip
    try:
        answer = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput("the service's answer is not JSON", code="attest.ak.answer") from exc
    if not isinstance(answer, dict):
        raise InvalidInput("the service's answer is not an object", code="attest.ak.answer")
    return answer


def _post_json(settings: DeviceSettings, path: str, body: bytes) -> tuple[int, str, bytes]:
    """POST ``body`` over mutual TLS with the LDevID; (status, error code header, body)."""
    from trustfleet.agent._https import post  # noqa: PLC0415  # awscrt only while enrolling
    from trustfleet.agent._tls import token_key  # noqa: PLC0415

    cert = settings.path(settings.identity.ldevid)
    if not cert.is_file():
        raise InvalidInput(f"{cert} is missing", hint="enroll the device (EST) first",
                           code="attest.ak.no_ldevid")  # fmt: skip
    answer = post(
        settings,
        path=path,
        body=body,
        content_type="application/json",
        client_cert=cert,
        key=token_key(settings),
        max_response_bytes=MAX_ANSWER_BYTES,
        code="attest.ak.connect",
    )
    return answer.status, answer.error_code, answer.body
