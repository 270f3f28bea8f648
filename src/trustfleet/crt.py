"""The one adapter over awscrt: its errors become TrustFleet errors here, and only here.

:func:`map_crt_errors` is the boundary (model: httpx's ``map_httpcore_exceptions()``): awscrt's
``AwsCrtError`` (TLS, refused connection, PKCS#11), the futures' ``TimeoutError`` and
``CancelledError``, and the ``RuntimeError`` of a client that was stopped become
:class:`~trustfleet.errors.Unavailable` with a short reason and a stable code. The MQTT 5
helpers wait for (or check) the broker's acknowledgements: a PUBACK or SUBACK whose reason code
refuses is :class:`~trustfleet.errors.Unavailable` too (``mqtt.puback``, ``mqtt.suback``), as
the service always reported it; :func:`suback311_callback` does the same for an MQTT 3.1.1
SUBACK (awscrt's ``SubscribeError``, the refusal 0x80).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import CancelledError, Future
from contextlib import contextmanager
from typing import Any, Final

from awscrt import io as crt_io
from awscrt import mqtt, mqtt5
from awscrt.exceptions import AwsCrtError

from trustfleet.errors import TrustFleetError, Unavailable

__all__ = [
    "CRT_ERRORS",
    "PUBACK_OK",
    "check_puback",
    "check_suback",
    "crt_reason",
    "map_crt_errors",
    "one_thread_bootstrap",
    "publish_and_wait",
    "suback311_callback",
    "suback_callback",
    "subscribe_and_wait",
]

logger = logging.getLogger(__name__)

CRT_ERRORS: Final[tuple[type[BaseException], ...]] = (
    AwsCrtError,
    TimeoutError,  # concurrent.futures.TimeoutError is this class since Python 3.11
    CancelledError,
    RuntimeError,  # awscrt refuses operations on a stopped or released client
)
"""What awscrt and its futures raise for a failed operation."""

PUBACK_OK: Final = frozenset(
    {mqtt5.PubackReasonCode.SUCCESS, mqtt5.PubackReasonCode.NO_MATCHING_SUBSCRIBERS}
)
"""PUBACK reason codes that mean the broker took the message."""


def crt_reason(exc: BaseException) -> str:
    """A short reason: an awscrt error's name (``AWS_IO_TLS_ERROR_NEGOTIATION_FAILURE``), else
    the first part of the message, else the exception's type."""
    name = getattr(exc, "name", None)
    if name:
        return str(name)
    text = str(exc)
    return text.split(":", 1)[0] if text else exc.__class__.__name__


@contextmanager
def map_crt_errors(
    action: str, *, code: str | None = "mqtt.unavailable", hint: str | None = None
) -> Iterator[None]:
    """Turn awscrt's errors raised in the block into :class:`Unavailable`.

    Args:
        action: What the block does, completing "cannot …" (``"publish the challenge"``).
        code: The stable code of the error (None: none).
        hint: What the user can do about it.

    Raises:
        Unavailable: ``"cannot <action>: <reason>"``, from the awscrt error. TrustFleet's own
            errors raised in the block pass unchanged.
    """
    try:
        yield
    except TrustFleetError:
        raise
    except CRT_ERRORS as exc:
        raise Unavailable(f"cannot {action}: {crt_reason(exc)}", hint=hint, code=code) from exc


def one_thread_bootstrap() -> crt_io.ClientBootstrap:
    """A client bootstrap with one event-loop thread (plenty for one connection).

    awscrt's default is a thread per CPU, and each thread costs resident memory on a device.
    """
    elg = crt_io.EventLoopGroup(1)
    return crt_io.ClientBootstrap(elg, crt_io.DefaultHostResolver(elg))


def check_puback(result: Any, *, what: str) -> None:
    """Check the PUBACK of a QoS 1 publish (``client.publish(...).result()``).

    Raises:
        Unavailable: The broker refused the message (``mqtt.puback``).
    """
    puback = getattr(result, "puback", None)
    code = getattr(puback, "reason_code", mqtt5.PubackReasonCode.SUCCESS)
    if code not in PUBACK_OK:
        name = getattr(code, "name", str(code))
        raise Unavailable(f"the broker refused {what} ({name})", code="mqtt.puback")


def check_suback(suback: Any, *, what: str) -> list[int]:
    """The granted reason codes of a SUBACK.

    Raises:
        Unavailable: The broker refused one of the subscriptions (``mqtt.suback``).
    """
    codes = [int(code) for code in getattr(suback, "reason_codes", None) or []]
    if any(code > int(mqtt5.SubackReasonCode.GRANTED_QOS_2) for code in codes):
        raise Unavailable(f"the broker refused {what}: {codes}", code="mqtt.suback")
    return codes


def publish_and_wait(
    client: mqtt5.Client,
    packet: mqtt5.PublishPacket,
    *,
    timeout_s: float,
    what: str,
    hint: str | None = None,
) -> None:
    """Publish ``packet`` (QoS 1) and wait, bounded, for a PUBACK that accepts it.

    Raises:
        Unavailable: Not sent, refused (``mqtt.puback``) or not acknowledged in time
            (``mqtt.unavailable``).
    """
    with map_crt_errors(f"send {what}", hint=hint):
        result = client.publish(packet).result(timeout=timeout_s)
    check_puback(result, what=what)


def subscribe_and_wait(
    client: mqtt5.Client,
    subscriptions: Sequence[mqtt5.Subscription],
    *,
    timeout_s: float,
    what: str = "the subscription",
) -> list[int]:
    """Subscribe and wait, bounded, for a SUBACK that grants every subscription.

    Returns:
        The SUBACK's reason codes (the granted QoS of each subscription).

    Raises:
        Unavailable: Not sent, refused (``mqtt.suback``) or not acknowledged in time.
    """
    packet = mqtt5.SubscribePacket(subscriptions=list(subscriptions))
    with map_crt_errors(f"subscribe to {what}"):
        suback = client.subscribe(packet).result(timeout=timeout_s)
    return check_suback(suback, what=what)


def suback_callback(
    *, what: str, on_granted: Callable[[list[int]], None] | None = None
) -> Callable[[Future[Any]], None]:
    """A done-callback for ``client.subscribe(...)`` (awscrt's thread must not raise).

    It calls ``on_granted`` with the reason codes when every subscription was granted, and
    logs a warning (the reason only) when the subscribe failed or was refused.
    """

    def done(future: Future[Any]) -> None:
        try:
            with map_crt_errors(f"subscribe to {what}"):
                suback = future.result()
            codes = check_suback(suback, what=what)
        except Unavailable as exc:
            logger.warning("%s", exc.one_line())
            return
        if on_granted is not None:
            on_granted(codes)

    return done


def suback311_callback(*, what: str) -> Callable[[Future[Any]], None]:
    """A done-callback for an MQTT 3.1.1 ``connection.subscribe(...)`` future.

    MQTT 3.1.1 has no reason codes: the broker grants a QoS or refuses with 0x80, which awscrt
    raises as ``SubscribeError``. The callback logs a warning (the reason only) when the
    subscribe failed or was refused; awscrt's thread must not raise.
    """

    def done(future: Future[Any]) -> None:
        try:
            with map_crt_errors(f"subscribe to {what}"):
                try:
                    future.result()
                except mqtt.SubscribeError as exc:
                    raise Unavailable(
                        f"the broker refused {what} (0x80)", code="mqtt.suback"
                    ) from exc
        except Unavailable as exc:
            logger.warning("%s", exc.one_line())

    return done
