"""What changed in revocation since the last look: the device CA's CRL and revoked devices.

Whoever revokes (the CLI, the API, another host) only writes the store; a broker-side
process follows the store with a :class:`RevocationFeed`, cheaply (one CRL number and one
event-log position per poll), and applies the changes to its broker.
"""

from __future__ import annotations

from dataclasses import dataclass

from trustfleet.store import UnitOfWork

__all__ = ["RevocationChanges", "RevocationFeed"]

_DEVICE_PREFIX = "device:"
_CUT_EVENTS = (
    "device.revoked",
    "certificate.superseded",
    "device.decommissioned",
    "device.ca_retired",
)
"""Events after which a device's live sessions must end: a revoked or decommissioned device,
a superseded LDevID (a session opened with a stolen certificate must not outlive the owner's
renewal), and a device whose CA was retired under it (services/rollover.py: its final CRL
revokes it)."""
_PAGE = 1000


@dataclass(frozen=True, slots=True)
class RevocationChanges:
    """What a poll found.

    Attributes:
        crl_der: The issuer's new CRL (DER) if its number changed, else None.
        crl_number: That CRL's number.
        revoked_devices: Devices revoked, decommissioned, whose LDevID was superseded or
            whose CA was retired since the previous poll, in log order: their live sessions
            are cut once the CRL is reloaded.
    """

    crl_der: bytes | None = None
    crl_number: int | None = None
    revoked_devices: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.crl_der is not None or bool(self.revoked_devices)


class RevocationFeed:
    """Follows one issuer's CRL number and the events that end a device's sessions
    (``_CUT_EVENTS``: revoked, superseded, decommissioned, CA retired) in the store.

    Args:
        uow: The store.
        issuer: The CA whose CRL the broker checks (the device CA).
    """

    def __init__(self, uow: UnitOfWork, *, issuer: str = "device") -> None:
        self._uow = uow
        self._issuer = issuer
        self._crl_number: int | None = None
        self._last_event_id = 0
        self._primed = False

    def prime(self) -> None:
        """Start from now: only later changes are reported."""
        with self._uow.begin(read_only=True) as tx:
            self._crl_number = tx.crls.number(self._issuer)
            self._last_event_id = tx.events.last_id()
        self._primed = True

    def poll(self) -> RevocationChanges:
        """The changes since the previous poll (or since :meth:`prime`).

        Raises:
            Unavailable: The store cannot be reached.
        """
        if not self._primed:
            self.prime()
            return RevocationChanges()
        with self._uow.begin(read_only=True) as tx:
            # Read the log's end first: ids follow commit order, so every revocation up to
            # it is visible now and any later one is found by the next poll.
            last = tx.events.last_id()
            devices: list[str] = []
            after = self._last_event_id
            while after < last:
                page = tx.events.list(after_id=after, limit=_PAGE, type=_CUT_EVENTS)
                page = [e for e in page if e.id <= last]
                devices += [
                    e.subject[len(_DEVICE_PREFIX) :]
                    for e in page
                    if e.subject.startswith(_DEVICE_PREFIX)
                ]
                if len(page) < _PAGE:
                    break
                after = page[-1].id
            number = tx.crls.number(self._issuer)
            der = None
            if number != self._crl_number:
                record = tx.crls.get(self._issuer)
                if record is not None:
                    der, number = record.der, record.crl_number
        self._last_event_id = last
        self._crl_number = number
        return RevocationChanges(crl_der=der, crl_number=number, revoked_devices=tuple(devices))
