"""The ``reenroll`` command: enroll again now, with a new key in the token if ``rekey``.

``{"name": "reenroll", "args": {"rekey": bool}}`` on ``tf/v1/d/<id>/cmd`` (docs/agent.md).
The agent stops its MQTT link (awscrt's TLS context holds a logged-in token session), then:

* without ``rekey``: ``simplereenroll`` (RFC 7030 §4.2.2) with the current LDevID and the same
  key, exactly like the renewal at 2/3 of the certificate's life;
* with ``rekey``: a new EC key is generated in the token under ``<label>.next``, the CSR is
  signed by it, ``simplereenroll`` is authenticated by the CURRENT LDevID and key (mutual TLS),
  the new certificate is written as the pending ``ldevid.next.pem``, and the switch in
  :mod:`trustfleet.agent._rekeytoken` makes the new key the identity key and destroys the old.

The link is rebuilt with whatever identity is in force (the outbox outlives it: no queued
message is lost), then the command is answered ``{"ok": true, "result": {"issuer_cn",
"serial", "rekeyed"}}``. A failure before the pending file exists changes nothing of the old
identity (the unused new key is destroyed) and is answered ``ok: false`` with the reason.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from trustfleet.agent._runparts import RunSummary
from trustfleet.agent.certfacts import CertFacts, read_pem_cert_facts
from trustfleet.agent.settings import DeviceSettings
from trustfleet.errors import Conflict, InvalidInput, TrustFleetError
from trustfleet.wire import Command

if TYPE_CHECKING:
    from cryptography import x509

__all__ = [
    "KEY_STATE_FILE",
    "ReenrollHost",
    "Reenrolled",
    "answer_reenroll",
    "key_matches",
    "pending_path",
    "recover_rekey",
    "reenroll_now",
]

logger = logging.getLogger(__name__)

KEY_STATE_FILE = "identity-key.json"
"""Written by a re-key: the SHA-256 of the identity key's SubjectPublicKeyInfo (the IDevID
certifies the factory's key, which the re-key destroyed)."""
_MAX_STATE_BYTES = 4096
_TOKEN_BUSY_S = 10.0  # how long a step waits for awscrt to release the token
_T = TypeVar("_T")


class ReenrollHost(Protocol):
    """What the handler needs of the running agent (``runner._Agent``)."""

    settings: DeviceSettings
    cert: CertFacts | None
    result: RunSummary
    now: Callable[[], datetime]

    def _drop_link(self) -> None: ...

    def _start_link(self) -> object: ...

    def emit(self, leaf: str, document: dict[str, Any]) -> int: ...


@dataclass(frozen=True)
class Reenrolled:
    """The identity in force after a re-enrollment."""

    certificate: x509.Certificate
    rekeyed: bool

    def result(self) -> dict[str, Any]:
        """The command result's body (docs/mqtt.md, ``reenroll``)."""
        from cryptography.x509.oid import NameOID  # noqa: PLC0415  # enrollment path only

        cns = self.certificate.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
        return {
            "issuer_cn": str(cns[0].value) if cns else "",
            "serial": format(self.certificate.serial_number, "x"),
            "rekeyed": self.rekeyed,
        }


def pending_path(settings: DeviceSettings) -> Path:
    """Where a re-key's new LDevID waits for the switch (``ldevid.pem`` → ``ldevid.next.pem``)."""
    current = settings.path(settings.identity.ldevid)
    return current.with_name(current.stem + ".next" + current.suffix)


def key_matches(settings: DeviceSettings, *, ldevid: CertFacts, idevid: CertFacts) -> bool:
    """Whether the LDevID certifies the identity key (no token, no ``cryptography`` needed).

    Before any re-key the identity key is the IDevID's; after one, ``identity-key.json`` names
    it by the SHA-256 of its SubjectPublicKeyInfo.
    """
    path = settings.directory / KEY_STATE_FILE
    if not path.is_file():
        return ldevid.spki == idevid.spki
    try:
        recorded = json.loads(path.read_bytes()[:_MAX_STATE_BYTES])["spki_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        logger.warning("%s is damaged; the LDevID is checked against the IDevID", path)
        return ldevid.spki == idevid.spki
    return bool(hashlib.sha256(ldevid.spki).hexdigest() == recorded)


def recover_rekey(settings: DeviceSettings) -> None:
    """Finish a re-key a crash interrupted after its certificate arrived (else one ``stat``).

    Raises:
        Config: The pending certificate fits none of the token's keys (set aside).
    """
    if not pending_path(settings).is_file():
        return
    from trustfleet.agent._rekeytoken import finish_pending  # noqa: PLC0415  # loads pkcs11

    logger.warning("a re-key was interrupted after its certificate arrived: finishing it")
    finish_pending(settings)


def answer_reenroll(host: ReenrollHost, command: Command) -> dict[str, Any]:
    """Run the ``reenroll`` command on the agent and return its answer (docs/mqtt.md)."""
    rekey = command.args.get("rekey", False)
    if not isinstance(rekey, bool):
        return _failed(command, "args.rekey must be true or false", code="agent.reenroll.args")
    host._drop_link()
    try:
        done = reenroll_now(host.settings, rekey=rekey, now=host.now())
    except TrustFleetError as exc:
        logger.warning("reenroll (rekey=%s) failed: %s", rekey, exc.one_line())
        return _failed(command, exc.message, code=exc.code or exc.category)
    except OSError as exc:  # the device folder could not be written
        logger.warning("reenroll (rekey=%s) failed: %s", rekey, exc)
        return _failed(command, f"cannot write the device folder: {exc.strerror or exc}",
                       code="agent.reenroll.io")  # fmt: skip
    finally:
        host._start_link()
    host.cert = read_pem_cert_facts(_pem(done.certificate))
    host.result.reenrolled += 1
    event = "agent.rekeyed" if done.rekeyed else "agent.reenrolled"
    host.emit("events", {"type": event, "details": done.result()})
    return {"id": command.id, "ok": True, "result": done.result()}


def reenroll_now(settings: DeviceSettings, *, rekey: bool, now: datetime) -> Reenrolled:
    """Re-enroll with the current LDevID now; with ``rekey``, for a new key (no link may run).

    Raises:
        PermissionDenied: The service refused the re-enrollment.
        InvalidInput: The service refused the CSR.
        Unavailable: The service could not be reached.
        Conflict: The token stayed busy.
    """
    from trustfleet.agent.est import enroll_device  # noqa: PLC0415  # loads cryptography

    recover_rekey(settings)
    if not rekey:
        outcome = _when_free(lambda: enroll_device(settings, mode="reenroll", now=now))
        return Reenrolled(certificate=outcome.certificate, rekeyed=False)
    from trustfleet.agent import _rekeytoken as token  # noqa: PLC0415  # loads pkcs11

    fresh = _when_free(lambda: token.generate_next_key(settings))
    target = pending_path(settings)
    failure: TrustFleetError | None = None
    try:
        _when_free(
            lambda: enroll_device(settings, mode="reenroll", now=now, csr_key=fresh, target=target)
        )
    except TrustFleetError as exc:
        failure = _without_frames(exc)  # the frames hold awscrt's logged-in TLS context
    if failure is not None:
        _discard(lambda: token.discard_next_key(settings))
        raise failure
    cert = _when_free(lambda: token.finish_pending(settings))
    if cert is None:  # pragma: no cover - the pending file was written just above
        raise InvalidInput("the new LDevID vanished before the switch", code="agent.rekey.lost")
    return Reenrolled(certificate=cert, rekeyed=True)


def _when_free(step: Callable[[], _T]) -> _T:
    """Run a token step, retrying while awscrt still holds the token (a released link)."""
    deadline = time.monotonic() + _TOKEN_BUSY_S
    while True:
        try:
            return step()
        except Conflict as exc:
            if exc.code == "keystore.key.exists" or time.monotonic() >= deadline:
                raise
            gc.collect()
            time.sleep(0.1)


def _without_frames(exc: TrustFleetError) -> TrustFleetError:
    """The error without its tracebacks (nor its causes'), so their frames can be collected."""
    link: BaseException | None = exc
    while link is not None:
        link.__traceback__ = None
        link = link.__cause__ or link.__context__
    return exc


def _discard(step: Callable[[], None]) -> None:
    try:
        _when_free(step)
    except TrustFleetError as exc:  # the old identity is intact; the next re-key cleans up
        logger.warning("could not destroy the unused new key: %s", exc.one_line())


def _pem(cert: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    return cert.public_bytes(serialization.Encoding.PEM)


def _failed(command: Command, reason: str, *, code: str) -> dict[str, Any]:
    body = {"reason": reason[:300], "code": code, "rekeyed": False}
    return {"id": command.id, "ok": False, "result": body, "error": reason[:300]}
