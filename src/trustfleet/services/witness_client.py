"""The log's side of c2sp.org/tlog-witness: asking a witness to cosign a checkpoint.

:func:`request_cosignature` posts ``add-checkpoint`` and returns the witness's signature lines,
or a :class:`WitnessRefusal` with its status, reason and (for 409) the size the witness has.
The caller verifies the cosignatures with the witness keys it trusts
(:func:`trustfleet.audit.verify_note` on the checkpoint with them added) before using them.
Failures to reach the witness are translated here, once, to :class:`Unavailable`.
"""

from __future__ import annotations

import http.client
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from trustfleet.audit import MAX_NOTE_BYTES, NoteSignature, parse_note
from trustfleet.audit.witness import format_add_checkpoint
from trustfleet.errors import InvalidInput, Unavailable

__all__ = ["MAX_RESPONSE_BYTES", "WitnessRefusal", "request_cosignature"]

MAX_RESPONSE_BYTES: Final = 16 * 1024
"""The largest answer read from a witness (a few signature lines)."""
_MAX_REASON_CHARS: Final = 300


@dataclass(frozen=True)
class WitnessRefusal:
    """A witness's answer other than 200.

    Attributes:
        status: The HTTP status (409: ``size`` is set; 403, 404, 422, 400 ...).
        reason: The first line of its body (bounded).
        size: For 409, the size of the checkpoint the witness cosigned last.
    """

    status: int
    reason: str
    size: int | None = None


def request_cosignature(
    url: str,
    *,
    old_size: int,
    proof: Sequence[bytes],
    note: bytes,
    timeout_s: float,
    ca_file: Path | None = None,
) -> list[NoteSignature] | WitnessRefusal:
    """POST ``<url>/add-checkpoint`` and return the witness's signatures or its refusal.

    Args:
        url: The witness's submission prefix (``https://host:port``, maybe with a path).
        old_size: The size of the checkpoint the witness cosigned last (0 if none).
        proof: The consistency proof from ``old_size`` to the checkpoint.
        note: The signed checkpoint note.
        timeout_s: Bound on connecting and on each read.
        ca_file: The CA (or the witness's self-signed certificate) to trust for ``https``.

    Returns:
        The signature lines of a 200 answer (unverified), or the refusal.

    Raises:
        InvalidInput: ``url`` is not http(s), the note is too large, or a 200 answer is not
            signature lines.
        Unavailable: The witness cannot be reached, or its answer is too large or cut.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"witness URL {url!r} is not http(s)://host[:port][/prefix]")
    if len(note) > MAX_NOTE_BYTES:
        raise InvalidInput(f"the checkpoint note is larger than {MAX_NOTE_BYTES} bytes")
    body = format_add_checkpoint(old_size=old_size, proof=proof, note=note)
    path = parts.path.rstrip("/") + "/add-checkpoint"
    status, content_type, answer = _post(parts.scheme, parts.netloc, path, body,
                                         timeout_s=timeout_s, ca_file=ca_file)  # fmt: skip
    if status == 200:
        return _signatures(note, answer)
    reason = answer.decode("utf-8", "replace").strip().split("\n", 1)[0][:_MAX_REASON_CHARS]
    size = None
    if status == 409 and content_type.startswith("text/x.tlog.size") and reason.isdigit():
        size = int(reason)
    return WitnessRefusal(status=status, reason=reason, size=size)


def _post(
    scheme: str, netloc: str, path: str, body: bytes, *, timeout_s: float, ca_file: Path | None
) -> tuple[int, str, bytes]:
    """(status, content type, body) of one POST; every transport failure is Unavailable."""
    connection: http.client.HTTPConnection
    if scheme == "https":
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        connection = http.client.HTTPSConnection(netloc, timeout=timeout_s, context=context)
    else:
        connection = http.client.HTTPConnection(netloc, timeout=timeout_s)
    headers = {"Content-Type": "text/plain; charset=utf-8", "Content-Length": str(len(body))}
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        answer = response.read(MAX_RESPONSE_BYTES + 1)
        content_type = response.getheader("Content-Type", "") or ""
        status = response.status
    except (OSError, http.client.HTTPException) as exc:  # ssl.SSLError is an OSError
        raise Unavailable(
            f"cannot reach the witness at {scheme}://{netloc}: {exc}",
            hint="check the witness URL, that it runs, and its TLS certificate",
            code="witness.unreachable",
        ) from exc
    finally:
        connection.close()
    if len(answer) > MAX_RESPONSE_BYTES:
        raise Unavailable(f"the witness's answer is larger than {MAX_RESPONSE_BYTES} bytes")
    return status, content_type, answer


def _signatures(note: bytes, answer: bytes) -> list[NoteSignature]:
    """The signature lines of a 200 answer, read as more signatures of the note (the spec's
    way: append them to the checkpoint and parse)."""
    if not answer.endswith(b"\n") or not answer.startswith("\u2014 ".encode()):
        raise InvalidInput("the witness's answer is not note signature lines")
    before = len(parse_note(note).signatures)
    return list(parse_note(note + answer).signatures[before:])
