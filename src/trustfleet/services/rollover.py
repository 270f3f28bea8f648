"""CA rollover with no downtime (docs/lifecycle.md "CA rollover"): start, activate, retire.

A rollover moves a kind of CA (``device`` or ``manufacturing``) to a new generation
(``device-2``, ``device-3``…) in three steps, each one security event:

1. :func:`start_rollover` (a ceremony: the root signs): a new key in the online token
   (``tf-service`` for a device CA, ``tf-factory`` for a manufacturing CA), its certificate from
   the offline root, its first CRL, ``[ca.<name>]`` in trustfleet.toml, ``public/<name>-ca.pem``
   and ``public/ca-bundle.pem`` with every trusted CA. State ``standby``: trusted, not issuing.
2. :func:`activate_ca`: the new CA issues (EST, ``factory provision``); the old one is
   ``retiring``: it issues no more, its certificates are still accepted while devices move.
3. :func:`retire_ca`: the old CA's final CRL lists every certificate of it still valid as
   revoked ``cessationOfOperation`` (RFC 5280 §5.3.1: no longer needed, no suspicion of key
   compromise; ``superseded`` stays what a device's re-enrollment to the new CA wrote), valid
   until the CA certificate's own end; state ``retired``: the broker, EST and OCSP stop trusting
   it. Refused while devices still hold a valid certificate of it unless ``force``, and always
   while the server's own certificates come from it (``server rotate-tls`` first). The server's
   older certificates of it are not listed (they were replaced, not compromised, and a running
   service process may still hold one until its restart).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from trustfleet.audit.context import current_operator
from trustfleet.errors import Conflict, InvalidInput
from trustfleet.fileio import write_atomic
from trustfleet.keystore import PinSource, Pkcs11Uri, open_token
from trustfleet.services._certs import record_certificate, serial_hex
from trustfleet.services.ceremony import CeremonyKeys, issue_intermediate, record_ceremony
from trustfleet.services.revocation import regenerate_crl
from trustfleet.services.runtime import Runtime
from trustfleet.services.tls_rotation import tls_issuers
from trustfleet.settings import update_server_settings
from trustfleet.store import Transaction
from trustfleet.store.lifecycle_records import CaRecord
from trustfleet.store.records import JSON, CertificateRecord

__all__ = [
    "CESSATION",
    "ROLLOVER_KINDS",
    "CaStep",
    "RolloverKind",
    "activate_ca",
    "next_ca_name",
    "publish_trust_bundle",
    "retire_ca",
    "start_rollover",
]

logger = logging.getLogger(__name__)

RolloverKind = Literal["device", "manufacturing"]
ROLLOVER_KINDS: Final[tuple[RolloverKind, ...]] = ("device", "manufacturing")
CESSATION: Final = "cessationOfOperation"
"""The reason the final CRL of a retired CA gives its still-valid certificates."""
_TOKENS: Final = {"device": "tf-service", "manufacturing": "tf-factory"}
_CURVE: Final = "P-256"
_HOLDER_KIND: Final = {"device": "ldevid", "manufacturing": "idevid"}
_MAX_CAS: Final = 999


@dataclass(frozen=True)
class CaStep:
    """What a rollover step did.

    Attributes:
        name: The CA the step was about (``device-2``…).
        kind: ``device`` or ``manufacturing``.
        state: Its state afterwards.
        previous: The CA that was active before (activate), or None.
        serial: The new CA certificate's serial (start), or None.
        revoked: Certificates the final CRL revoked (retire).
        holders: Devices still holding a valid certificate of the CA (retire).
    """

    name: str
    kind: str
    state: str
    previous: str | None = None
    serial: str | None = None
    revoked: int = 0
    holders: int = 0


def next_ca_name(kind: str, existing: Iterable[str]) -> str:
    """The name of the next generation of a kind of CA (pure).

    The first CA of a kind is named after it; the next ones ``<kind>-2``, ``<kind>-3``…, one
    more than the highest generation ``existing`` holds (names in the store or the settings).

    Raises:
        InvalidInput: Not a kind that rolls over, or too many generations.
    """
    if kind not in ROLLOVER_KINDS:
        raise InvalidInput(
            f"'{kind}' CAs do not roll over here", hint="use --kind device or --kind manufacturing",
            code="ca.kind",
        )  # fmt: skip
    pattern = re.compile(rf"{kind}(?:-([0-9]+))?")
    generations = [1]
    for name in existing:
        match = pattern.fullmatch(name)
        if match:
            generations.append(int(match.group(1) or 1))
    nxt = max(generations) + 1
    if nxt > _MAX_CAS:
        raise InvalidInput(f"too many {kind} CAs", code="ca.generations")
    return f"{kind}-{nxt}"


def start_rollover(rt: Runtime, keys: CeremonyKeys, *, kind: str, now: datetime) -> CaStep:
    """Make the next CA of ``kind``: key in its token, certificate from the offline root (a
    ceremony: ``keys`` holds the offline folder and the PIN of ``tf-root``), state standby.

    Args:
        rt: The runtime of the home.
        keys: What the custodians brought (services.ceremony).
        kind: ``device`` or ``manufacturing``.
        now: The current time.

    Raises:
        InvalidInput: Not a kind that rolls over.
        Conflict: A rollover of that kind is already under way (a standby or retiring CA).
        Unavailable, PermissionDenied: The offline folder or the root PIN (services.ceremony).
    """
    name = _next_name(rt, kind)
    token = _TOKENS[kind]
    key_rel = f"pkcs11:token={token};object={name}-ca;type=private"
    key_rel += f"?pin-source=file:secrets/{token}.pin"
    public_key = _generate_key(rt, Pkcs11Uri.parse(key_rel), label=f"{name}-ca")
    rt.release_keys()  # the offline folder has its own SoftHSM2 configuration (ADR 0002)
    kind_: RolloverKind = "device" if kind == "device" else "manufacturing"
    cert = issue_intermediate(
        rt.settings, keys, kind=kind_, name=name, public_key=public_key, now=now
    )
    cert_rel = f"public/{name}-ca.pem"
    write_atomic(rt.settings.path(cert_rel), cert.public_bytes(serialization.Encoding.PEM))
    rt.settings = update_server_settings(
        rt.settings.home, {"ca": {name: {"key": key_rel, "cert": cert_rel}}}
    )
    serial = serial_hex(cert.serial_number)
    with rt.uow.begin() as tx:
        record_certificate(tx, cert, issuer="root", kind="ca", device_id=None, now=now)
        tx.cas.add(name=name, kind=kind, state="standby", now=now)
        regenerate_crl(rt, tx, name, now=now)
        details: dict[str, JSON] = {
            "kind": kind,
            "serial": serial,
            "not_after": cert.not_valid_after_utc.isoformat(),
        }
        _event(tx, "ca.rollover.started", name, details, now=now)
        record_ceremony(tx, kind="intermediate", custodians=list(keys.pins),
                        details={"ca": name, **details}, now=now)  # fmt: skip
        publish_trust_bundle(rt, tx)
    logger.info("CA %s made (standby)", name)
    return CaStep(name, kind, "standby", serial=serial)


def _next_name(rt: Runtime, kind: str) -> str:
    with rt.uow.begin(read_only=True) as tx:
        known = tx.cas.list(kind=kind) if kind in ROLLOVER_KINDS else []
    name = next_ca_name(kind, [*(ca.name for ca in known), *rt.settings.ca])
    busy = [ca for ca in known if ca.state in ("standby", "retiring")]
    if busy:
        raise Conflict(
            f"CA '{busy[0].name}' of kind {kind} is still {busy[0].state}",
            hint=f"finish that rollover first ('trustfleet ca rollover activate|retire "
            f"{busy[0].name}')",
            code="ca.rollover.busy",
        )
    return name


def activate_ca(rt: Runtime, name: str, *, now: datetime) -> CaStep:
    """Make a standby CA the one that issues; the active one of its kind becomes retiring.

    Raises:
        NotFound: No CA of that name.
        Conflict: It is not standby (or is a root CA).
    """
    with rt.uow.begin() as tx:
        ca = tx.cas.require(name)
        if ca.kind not in ROLLOVER_KINDS or ca.state != "standby":
            raise Conflict(
                f"CA '{name}' is {ca.state} {ca.kind}; only a standby device or manufacturing "
                "CA is activated", hint="see 'trustfleet ca status'", code="ca.state",
            )  # fmt: skip
        previous = tx.cas.active(ca.kind)
        tx.cas.set_state(previous.name, "retiring", now=now)
        tx.cas.set_state(name, "active", now=now)
        _event(tx, "ca.rollover.activated", name, {"kind": ca.kind, "previous": previous.name},
               now=now)  # fmt: skip
    rt.issuer(name)  # load it now: a missing key or certificate fails here, not at enrollment
    logger.info("CA %s active; %s retiring", name, previous.name)
    return CaStep(name, ca.kind, "active", previous=previous.name)


def retire_ca(rt: Runtime, name: str, *, force: bool, now: datetime) -> CaStep:
    """Retire a retiring (or standby) CA with its final CRL.

    Raises:
        NotFound: No CA of that name.
        Conflict: It is not retiring or standby (code ``ca.state``); devices still hold a
            valid certificate of it and ``force`` is false (``ca.retire.devices``); the server's
            own certificates still come from it (``ca.retire.server``).
    """
    with rt.uow.begin() as tx:
        ca = tx.cas.require(name)
        if ca.kind not in ROLLOVER_KINDS or ca.state not in ("retiring", "standby"):
            raise Conflict(
                f"CA '{name}' is {ca.state}; only a retiring or standby CA is retired",
                hint="activate its successor first", code="ca.state",
            )  # fmt: skip
        held = [c for c in tx.certificates.list_valid(name, now=now)
                if c.kind == _HOLDER_KIND[ca.kind]]  # fmt: skip
        _check_retirable(rt, ca, _waiting(tx, ca, held), force=force)
        for rec in held:
            tx.certificates.revoke(rec.issuer, rec.serial, reason=CESSATION, now=now)
        until = rt.ca_certificate(name).not_valid_after_utc
        regenerate_crl(rt, tx, name, now=now, next_update=max(until, now + timedelta(hours=1)))
        tx.cas.set_state(name, "retired", now=now)
        devices = sorted({c.device_id for c in held if c.device_id})
        for device_id in devices:
            _event(tx, "device.ca_retired", name, {"ca": name}, now=now, subject=device_id)
        _event(tx, "ca.rollover.retired", name, {"kind": ca.kind, "revoked": len(held),
               "devices": len(devices), "forced": force}, now=now)  # fmt: skip
        publish_trust_bundle(rt, tx)
    logger.info("CA %s retired (%d certificates revoked)", name, len(held))
    return CaStep(name, ca.kind, "retired", revoked=len(held), holders=len(devices))


def _waiting(tx: Transaction, ca: CaRecord, held: Sequence[CertificateRecord]) -> set[str]:
    """The devices that still need the CA: every holder of an LDevID of a device CA; of a
    manufacturing CA, the devices not enrolled yet (an enrolled device's IDevID only serves a
    'device reopen')."""
    ids = {c.device_id for c in held if c.device_id}
    if ca.kind == "device":
        return ids
    return {
        d for d in ids if (dev := tx.devices.get(d)) is not None and dev.state == "manufactured"
    }


def _check_retirable(rt: Runtime, ca: CaRecord, waiting: set[str], *, force: bool) -> None:
    subject = rt.ca_certificate(ca.name).subject
    servers = sorted(name for name, issuer in tls_issuers(rt).items() if issuer == subject)
    if servers:
        raise Conflict(
            f"the server's {', '.join(servers)} certificate(s) still come from CA '{ca.name}'",
            hint="run 'trustfleet server rotate-tls' first", code="ca.retire.server",
        )  # fmt: skip
    if waiting and not force:
        raise Conflict(
            f"{len(waiting)} device(s) still hold a valid certificate of CA '{ca.name}'",
            hint="re-enroll them ('trustfleet device reenroll --all --wait'), or --force: "
            "their certificates are revoked and they must go through 'device reopen'",
            code="ca.retire.devices",
        )


def publish_trust_bundle(rt: Runtime, tx: Transaction) -> None:
    """Write ``public/ca-bundle.pem``: the root and every trusted manufacturing and device CA.

    Called in the transaction that changes the set; a device anchors on the root, so a new
    CA's chains verify on devices made before it.
    """
    names = ["root"]
    for kind in ROLLOVER_KINDS[::-1]:
        names += [ca.name for ca in tx.cas.trusted(kind)]
    pems = [rt.ca_certificate(n).public_bytes(serialization.Encoding.PEM) for n in names]
    write_atomic(rt.settings.path("public/ca-bundle.pem"), b"".join(pems))


def _generate_key(rt: Runtime, uri: Pkcs11Uri, *, label: str) -> ec.EllipticCurvePublicKey:
    pin = PinSource.parse(uri.pin_source or "", base_dir=rt.settings.home).read()
    with open_token(
        module=rt.module, label=uri.token or "", pin=pin, conf=rt.softhsm_conf
    ) as session:
        return session.generate_ec_key(label, curve=_CURVE).public_key()


def _event(
    tx: Transaction,
    type_: str,
    name: str,
    details: Mapping[str, JSON],
    *,
    now: datetime,
    subject: str | None = None,
) -> None:
    tx.events.append(
        type=type_,
        actor=current_operator(),
        subject=f"device:{subject}" if subject else f"ca:{name}",
        details={"ca": name, **details},
        now=now,
    )
