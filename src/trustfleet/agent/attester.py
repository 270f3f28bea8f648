"""The attester: answers the service's challenges with a TPM quote and the event log.

The service publishes ``{"id", "nonce", "pcrs"}`` on ``tf/v1/d/<id>/attest/challenge``; the
device answers on ``…/attest/evidence`` with the quote over the requested PCRs (only the boot
chain's 0, 4, 9 and 10 are honoured) with the nonce as ``extraData``, its signature, this
boot's event log, the release and the slot (docs/attestation.md, ``encode_evidence``).

tpm2-pytss costs about 27 MB of resident memory, more than the rest of the agent; so the agent
answers each challenge in a short-lived child process (``python -m trustfleet.agent attest``,
:func:`attest_in_child`) from a worker thread (:class:`Attester`), and its main process never
loads it.
"""

from __future__ import annotations

import binascii
import contextlib
import json
import logging
import queue
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from trustfleet.agent.platform.measured_boot import MAX_EVENTLOG_ENTRIES, DeviceTpm, quoted_pcrs
from trustfleet.errors import InvalidInput, TrustFleetError, Unavailable
from trustfleet.wire import (
    MAX_CHALLENGE_BYTES,
    MAX_CHALLENGE_ID_CHARS,
    MAX_EVIDENCE_BYTES,
    MAX_NONCE_BYTES,
    MAX_REQUESTED_PCRS,
)

if TYPE_CHECKING:
    from trustfleet.agent.platform.bootloader import BootResult
    from trustfleet.keystore.tpm import Tpm

__all__ = [
    "MAX_CHALLENGE_BYTES",
    "MAX_EVIDENCE_BYTES",
    "Attester",
    "ChallengeRequest",
    "answer_challenge",
    "attest_in_child",
    "parse_challenge",
]

logger = logging.getLogger(__name__)

MAX_ID_CHARS: Final = MAX_CHALLENGE_ID_CHARS
CHILD_TIMEOUT_S: Final = 60.0
_QUEUE_MAX: Final = 4
_CLOSE_WAIT_S: Final = 5.0
_MALFORMED: Final = "attestation.challenge.malformed"
_KEYS: Final = frozenset({"id", "nonce", "pcrs"})
_MAX_STRING_CHARS: Final = 256


@dataclass(frozen=True, slots=True, kw_only=True)
class ChallengeRequest:
    """A challenge as the device received it (shape and bounds checked)."""

    id: str
    nonce: bytes
    pcrs: tuple[int, ...]


def _malformed(message: str) -> InvalidInput:
    return InvalidInput(
        f"challenge: {message}", hint="see docs/attestation.md (challenge)", code=_MALFORMED
    )


def parse_challenge(payload: bytes, *, max_bytes: int = MAX_CHALLENGE_BYTES) -> ChallengeRequest:
    """Check a challenge payload: ``{"id", "nonce" (base64), "pcrs"}`` within bounds.

    Raises:
        InvalidInput: Oversized, not a JSON object with exactly those keys, an id that is not
            1..128 characters, a nonce that is not base64 of 1..64 bytes, or PCRs that are not
            a list of at most 24 integers 0..23 (``attestation.challenge.malformed``).
    """
    if len(payload) > max_bytes:
        raise _malformed(f"over {max_bytes} bytes")
    try:
        body = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _malformed("not UTF-8 JSON") from exc
    if not isinstance(body, dict) or set(body) != _KEYS:
        raise _malformed("must be an object with exactly 'id', 'nonce' and 'pcrs'")
    challenge_id, nonce_text, pcrs = body["id"], body["nonce"], body["pcrs"]
    if not isinstance(challenge_id, str) or not 0 < len(challenge_id) <= MAX_ID_CHARS:
        raise _malformed(f"'id' must be a string of 1 to {MAX_ID_CHARS} characters")
    try:
        if not isinstance(nonce_text, str) or len(nonce_text) > 4 * MAX_NONCE_BYTES:
            raise ValueError("nonce")
        nonce = binascii.a2b_base64(nonce_text.encode("ascii"), strict_mode=True)
    except (ValueError, UnicodeEncodeError, binascii.Error) as exc:
        raise _malformed("'nonce' must be base64") from exc
    if not 0 < len(nonce) <= MAX_NONCE_BYTES:
        raise _malformed(f"'nonce' must be 1 to {MAX_NONCE_BYTES} bytes")
    if (
        not isinstance(pcrs, list)
        or len(pcrs) > MAX_REQUESTED_PCRS
        or not all(type(p) is int and 0 <= p <= 23 for p in pcrs)
    ):
        raise _malformed(f"'pcrs' must be a list of at most {MAX_REQUESTED_PCRS} PCRs (0-23)")
    return ChallengeRequest(id=challenge_id, nonce=nonce, pcrs=tuple(pcrs))


def answer_challenge(
    device: DeviceTpm,
    tpm: Tpm,
    payload: bytes,
    *,
    release: str | None,
    slot: str | None,
) -> bytes:
    """The evidence payload answering a challenge (a quote made now, this boot's log).

    Args:
        device: The device's TPM files (for the event log).
        tpm: A connection to the device's TPM (holding the AK).
        payload: The challenge's MQTT payload.
        release: The release the device runs (None: not announced).
        slot: The slot it booted.

    Raises:
        InvalidInput: A malformed challenge, none of the boot PCRs requested, or an event log
            that breaks the contract.
        NotFound: The TPM has no AK.
        Unavailable: The TPM cannot be reached.
    """
    from trustfleet.attestation import encode_evidence, parse_eventlog  # noqa: PLC0415

    challenge = parse_challenge(payload)
    pcrs = quoted_pcrs(challenge.pcrs)
    if not pcrs:
        raise _malformed("none of the boot chain's PCRs (0, 4, 9, 10) was requested")
    eventlog = parse_eventlog(
        device.eventlog(), max_entries=MAX_EVENTLOG_ENTRIES, max_string_chars=_MAX_STRING_CHARS
    )
    attest, signature = tpm.quote(challenge.nonce, pcrs)
    return encode_evidence(challenge_id=challenge.id, quote=attest, signature=signature,
                           eventlog=eventlog, release=release, slot=slot)  # fmt: skip


def attest_main(directory: Path, payload: bytes, *, release: str | None, slot: str | None) -> bytes:
    """What ``python -m trustfleet.agent attest`` does: connect, quote, return the evidence."""
    device = DeviceTpm(directory)
    with device.open() as tpm:
        return answer_challenge(device, tpm, payload, release=release, slot=slot)


def attest_in_child(
    directory: Path,
    payload: bytes,
    *,
    release: str | None,
    slot: str | None,
    timeout_s: float = CHILD_TIMEOUT_S,
) -> bytes:
    """Answer a challenge in a child process (tpm2-pytss never enters this process).

    Raises:
        Unavailable: The child failed, timed out or answered more than the bound.
    """
    args = [sys.executable, "-m", "trustfleet.agent", "attest", "--device", str(directory)]
    if release:
        args += ["--release", release]
    if slot:
        args += ["--slot", slot]
    try:
        proc = subprocess.run(args, input=payload[:MAX_CHALLENGE_BYTES + 1], capture_output=True,
                              timeout=timeout_s, check=False)  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise Unavailable("the attester did not answer in time", code="attest.timeout") from exc
    evidence = proc.stdout.strip()
    if proc.returncode != 0 or not evidence or len(evidence) > MAX_EVIDENCE_BYTES:
        why = (proc.stderr.decode("utf-8", "replace").strip().splitlines() or ["no output"])[-1]
        raise Unavailable(f"the attester failed: {why[:300]}", code="attest.failed")
    return evidence


class Attester:
    """Answers challenges one at a time on a worker thread; evidence waits in :meth:`drain`.

    Args:
        directory: The device folder.
        boot: What this boot runs (its release and slot go into the evidence).
        notify: Called (on the worker thread) when evidence is ready.
        answer: How a challenge is answered (default: :func:`attest_in_child`).
    """

    def __init__(
        self,
        directory: Path,
        *,
        boot: BootResult | None,
        notify: Callable[[], None],
        answer: Callable[..., bytes] = attest_in_child,
    ) -> None:
        self._directory = directory
        self._release = boot.version if boot is not None else None
        self._slot = boot.slot if boot is not None else None
        self._notify, self._answer = notify, answer
        self._inbox: queue.Queue[bytes | None] = queue.Queue(maxsize=_QUEUE_MAX)
        self._ready: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.answered = 0
        self.failed = 0

    def enabled(self) -> bool:
        """Whether this device has a TPM to attest with."""
        return DeviceTpm(self._directory).present()

    def submit(self, payload: bytes) -> None:
        """Queue a challenge (dropped when oversized, or when too many wait)."""
        if len(payload) > MAX_CHALLENGE_BYTES:
            logger.warning("ignored a challenge over %d bytes", MAX_CHALLENGE_BYTES)
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="attester", daemon=True)
            self._thread.start()
        try:
            self._inbox.put_nowait(payload)
        except queue.Full:
            logger.warning("ignored a challenge: %d are waiting already", _QUEUE_MAX)

    def drain(self) -> list[bytes]:
        """The evidence payloads ready to publish."""
        out: list[bytes] = []
        while True:
            try:
                out.append(self._ready.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        """Stop the worker after the challenge it is answering (bounded wait)."""
        if self._thread is not None:
            with contextlib.suppress(queue.Full):
                self._inbox.put(None, timeout=1.0)
            self._thread.join(timeout=_CLOSE_WAIT_S)

    def _work(self) -> None:
        while (payload := self._inbox.get()) is not None:
            try:
                evidence = self._answer(self._directory, payload, release=self._release,
                                        slot=self._slot)  # fmt: skip
            except TrustFleetError as exc:
                self.failed += 1
                logger.warning("could not answer a challenge: %s", exc.one_line())
                continue
            self.answered += 1
            self._ready.put(evidence)
            self._notify()
