"""The bootstrap interface of the LwM2M server (OMA LwM2M 1.1 Core TS 6.1, server-initiated
after a Bootstrap-Request): ``POST /bs?ep=`` from a peer admitted with a bootstrap credential,
then Delete, the TLV writes of Security object 0 and Server object 1 that the backend's
:class:`~trustfleet.lwm2m.ports.BootstrapPlan` gives, Bootstrap-Finish, and the end of the
bootstrap session.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime

from trustfleet.errors import InvalidInput, TrustFleetError
from trustfleet.lwm2m import content
from trustfleet.lwm2m._exchange import Address, Exchange
from trustfleet.lwm2m._responses import respond
from trustfleet.lwm2m.bootstrap import BootstrapStep, bootstrap_steps
from trustfleet.lwm2m.coap import Code, Message, request
from trustfleet.lwm2m.dtls import DtlsServer
from trustfleet.lwm2m.ports import Lwm2mBackend, PeerIdentity

__all__ = ["BootstrapFlow"]

logger = logging.getLogger(__name__)

_Session = tuple[Address, str]
"""A DTLS session: the peer's address and the identity it proved."""


class BootstrapFlow:
    """Bootstrap-Requests and the sequences they start.

    Args:
        exchange: The CoAP message layer (requests to the device).
        dtls: The DTLS server (the bootstrap session is closed at the end).
        backend: Admission and the plan.
        spawn: Runs a coroutine in the background (the server's task set).
        now: Wall-clock time for the backend.
    """

    def __init__(
        self,
        *,
        exchange: Exchange,
        dtls: DtlsServer,
        backend: Lwm2mBackend,
        spawn: Callable[[Coroutine[object, object, None]], None],
        now: Callable[[], datetime],
    ) -> None:
        self._exchange = exchange
        self._dtls = dtls
        self._backend = backend
        self._spawn = spawn
        self._now = now
        self._finishing: set[_Session] = set()
        """Bootstrap sessions Bootstrap-Finish was sent on: their requests are not answered (the
        session is about to close, see :meth:`_steps`)."""

    def finishing(self, session: _Session) -> bool:
        """Whether Bootstrap-Finish was sent on this session (leave its requests unanswered)."""
        return session in self._finishing

    async def request(self, peer: PeerIdentity, message: Message) -> Message:
        """Answer a Bootstrap-Request (2.04) and start the sequence.

        Raises:
            InvalidInput: No ``ep``.
            PermissionDenied: The peer may not bootstrap as that endpoint.
        """
        endpoint = next((q[3:] for q in message.uri_query() if q.startswith("ep=")), None)
        if not endpoint:
            raise InvalidInput("Bootstrap-Request without 'ep'.", code="lwm2m.bs.ep")
        now = self._now()
        access = await asyncio.to_thread(
            self._backend.admit, peer, endpoint=endpoint, purpose="bootstrap", now=now
        )
        plan = await asyncio.to_thread(self._backend.bootstrap_plan, access, now=now)
        self._spawn(self._run(peer, access.device_id, bootstrap_steps(plan)))
        return respond(message, Code.CHANGED)

    async def _run(
        self, peer: PeerIdentity, device_id: str, steps: Sequence[BootstrapStep]
    ) -> None:
        await asyncio.sleep(0)  # the 2.04 goes first
        session = (peer.address, peer.identity)
        try:
            await self._steps(device_id, steps, session=session)
        finally:
            self._finishing.discard(session)

    async def _steps(
        self, device_id: str, steps: Sequence[BootstrapStep], *, session: _Session
    ) -> None:
        address = session[0]
        for step in steps:
            if step.method == "finish":
                # From here on the client may send its Register at once, over this (bootstrap)
                # session; it is left unanswered, and its retransmission over the next session
                # (with the credential just written) is handled as a new request.
                self._finishing.add(session)
            try:
                answer = await self._exchange.request(address, _message(step))
            except TrustFleetError as exc:
                logger.warning("bootstrap of %s stopped: %s", device_id, exc.one_line())
                return
            if answer.code not in (Code.DELETED, Code.CHANGED, Code.CREATED):
                if step.method == "delete":
                    continue  # nothing to delete: fine
                logger.warning("bootstrap of %s: %s answered %s", device_id, step.path, answer.code)
                return
        # Bootstrap-Finish acknowledged: end the bootstrap session, so that the device's next
        # handshake (to the device-management server, which may be this same address) uses the
        # credential just written; a client that kept the session would otherwise register
        # with its bootstrap credential, which is refused (Wakaama/tinydtls does that).
        self._dtls.close_peers(lambda peer: peer.address == address)
        self._exchange.forget_peer(address)


def _message(step: BootstrapStep) -> Message:
    """The CoAP request of one bootstrap step (writes in TLV)."""
    if step.method == "delete":
        return request(Code.DELETE, path=step.path, message_id=0)
    if step.method == "finish":
        return request(Code.POST, path=step.path, message_id=0)
    values = [content.Value(path=f"{step.path}/{rid}", value=v) for rid, v in step.resources]
    payload = content.encode_values(values, content_format=content.LWM2M_TLV, base_path=step.path)
    return request(
        Code.PUT,
        path=step.path,
        message_id=0,
        payload=payload,
        content_format=content.LWM2M_TLV,
    )
