"""Responses to devices' requests, and the one mapping of errors to CoAP response codes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from trustfleet.errors import InvalidInput, NotFound, PermissionDenied, TrustFleetError, Unavailable
from trustfleet.lwm2m.coap import Code, Message, MessageType, response_to

__all__ = ["coap_code", "respond"]

_CODE_BY_ERROR: Final[dict[str, int]] = {
    "lwm2m.coap.too_large": Code.REQUEST_ENTITY_TOO_LARGE,
    "lwm2m.coap.incomplete": Code.REQUEST_ENTITY_INCOMPLETE,
}
_CODE_BY_CATEGORY: Final[tuple[tuple[type[TrustFleetError], int], ...]] = (
    (PermissionDenied, Code.FORBIDDEN),
    (NotFound, Code.NOT_FOUND),
    (Unavailable, Code.SERVICE_UNAVAILABLE),
    (InvalidInput, Code.BAD_REQUEST),
)


def respond(
    req: Message,
    code: int,
    *,
    payload: bytes = b"",
    options: Sequence[tuple[int, bytes]] = (),
    content_format: int | None = None,
) -> Message:
    """The response to a device's request: piggybacked on the ACK of a CON request, a NON
    response to a NON request (its message id is assigned by the message layer)."""
    return response_to(
        req, code, payload=payload, options=options, content_format=content_format,
        message_id=None if req.type == MessageType.CON else 0,
    )  # fmt: skip


def coap_code(exc: TrustFleetError) -> int:
    """The one mapping of errors to CoAP response codes."""
    if exc.code in _CODE_BY_ERROR:
        return _CODE_BY_ERROR[exc.code]
    for category, code in _CODE_BY_CATEGORY:
        if isinstance(exc, category):
            return code
    return Code.INTERNAL_SERVER_ERROR
