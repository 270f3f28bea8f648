"""``trustfleet.crt``: awscrt's real errors become TrustFleet errors at one boundary."""

from __future__ import annotations

from concurrent.futures import CancelledError, Future
from typing import Any

import pytest
from awscrt import mqtt5
from awscrt.exceptions import AwsCrtError

from trustfleet import crt
from trustfleet.errors import Config, PermissionDenied, Unavailable

CRT_FAILURES: dict[str, BaseException] = {
    "tls": AwsCrtError(1029, "AWS_IO_TLS_ERROR_NEGOTIATION_FAILURE", "TLS negotiation failed"),
    "refused": AwsCrtError(1047, "AWS_IO_SOCKET_CONNECTION_REFUSED", "refused"),
    "timeout": TimeoutError(),
    "cancelled": CancelledError(),
    "stopped-client": RuntimeError("Client is stopped: cannot publish"),
}
REASONS = {
    "tls": "AWS_IO_TLS_ERROR_NEGOTIATION_FAILURE",
    "refused": "AWS_IO_SOCKET_CONNECTION_REFUSED",
    "timeout": "TimeoutError",
    "cancelled": "CancelledError",
    "stopped-client": "Client is stopped",
}


@pytest.mark.parametrize("case", CRT_FAILURES, ids=str)
def test_awscrt_errors_become_unavailable(case: str) -> None:
    exc = CRT_FAILURES[case]
    with pytest.raises(Unavailable) as err, crt.map_crt_errors("publish the thing", hint="h"):
        raise exc
    assert err.value.message == f"cannot publish the thing: {REASONS[case]}"
    assert err.value.code == "mqtt.unavailable"
    assert err.value.hint == "h"
    assert err.value.__cause__ is exc


def test_code_is_the_caller_s() -> None:
    with pytest.raises(Unavailable) as err, crt.map_crt_errors("x", code="keystore.tls_context"):
        raise AwsCrtError(1, "AWS_ERROR_PKCS11_CKR_PIN_INCORRECT", "")
    assert err.value.code == "keystore.tls_context"
    assert "AWS_ERROR_PKCS11_CKR_PIN_INCORRECT" in err.value.one_line()


@pytest.mark.parametrize("exc", [Config("c"), PermissionDenied("p"), Unavailable("u")], ids=repr)
def test_trustfleet_errors_pass_unchanged(exc: Exception) -> None:
    with pytest.raises(type(exc)) as err, crt.map_crt_errors("x"):
        raise exc
    assert err.value is exc


@pytest.mark.parametrize("exc", [ValueError("v"), KeyError("k"), MemoryError()], ids=repr)
def test_other_errors_are_not_awscrt_s(exc: BaseException) -> None:
    with pytest.raises(type(exc)), crt.map_crt_errors("x"):
        raise exc


class _Puback:
    def __init__(self, code: mqtt5.PubackReasonCode) -> None:
        self.puback = mqtt5.PubackPacket(reason_code=code)


@pytest.mark.parametrize(
    "code", [mqtt5.PubackReasonCode.SUCCESS, mqtt5.PubackReasonCode.NO_MATCHING_SUBSCRIBERS]
)
def test_puback_accepted(code: mqtt5.PubackReasonCode) -> None:
    crt.check_puback(_Puback(code), what="m")


@pytest.mark.parametrize(
    "code",
    [mqtt5.PubackReasonCode.NOT_AUTHORIZED, mqtt5.PubackReasonCode.QUOTA_EXCEEDED],
    ids=lambda c: c.name,
)
def test_puback_refused(code: mqtt5.PubackReasonCode) -> None:
    with pytest.raises(Unavailable) as err:
        crt.check_puback(_Puback(code), what="the command")
    assert err.value.code == "mqtt.puback"
    assert code.name in err.value.message


def test_suback() -> None:
    ok = mqtt5.SubackPacket(reason_codes=[mqtt5.SubackReasonCode.GRANTED_QOS_1])
    assert crt.check_suback(ok, what="s") == [1]
    refused = mqtt5.SubackPacket(
        reason_codes=[mqtt5.SubackReasonCode.GRANTED_QOS_1, mqtt5.SubackReasonCode.NOT_AUTHORIZED]
    )
    with pytest.raises(Unavailable) as err:
        crt.check_suback(refused, what="s")
    assert err.value.code == "mqtt.suback"


def test_suback_callback_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    granted: list[list[int]] = []
    callback = crt.suback_callback(what="the topics", on_granted=granted.append)
    failed: Future[Any] = Future()
    failed.set_exception(AwsCrtError(5, "AWS_ERROR_MQTT5_CLIENT_TERMINATED", ""))
    callback(failed)
    refused: Future[Any] = Future()
    refused.set_result(mqtt5.SubackPacket(reason_codes=[mqtt5.SubackReasonCode.NOT_AUTHORIZED]))
    callback(refused)
    ok: Future[Any] = Future()
    ok.set_result(mqtt5.SubackPacket(reason_codes=[mqtt5.SubackReasonCode.GRANTED_QOS_1]))
    callback(ok)
    assert granted == [[1]]
    assert "AWS_ERROR_MQTT5_CLIENT_TERMINATED" in caplog.text
    assert "refused the topics" in caplog.text


class _StoppedClient:
    def publish(self, packet: Any) -> Future[Any]:
        raise RuntimeError("client stopped")

    def subscribe(self, packet: Any) -> Future[Any]:
        future: Future[Any] = Future()
        return future  # never acknowledged


def test_publish_and_subscribe_and_wait_translate() -> None:
    client: Any = _StoppedClient()
    packet = mqtt5.PublishPacket(topic="tf/v1/d/dev-00001/cmd", payload=b"{}")
    with pytest.raises(Unavailable) as err:
        crt.publish_and_wait(client, packet, timeout_s=0.01, what="the command", hint="h")
    assert err.value.message == "cannot send the command: client stopped"
    sub = mqtt5.Subscription(topic_filter="tf/v1/d/dev-00001/cmd", qos=mqtt5.QoS.AT_LEAST_ONCE)
    with pytest.raises(Unavailable) as err:
        crt.subscribe_and_wait(client, [sub], timeout_s=0.01)
    assert err.value.message == "cannot subscribe to the subscription: TimeoutError"


def test_crt_reason() -> None:
    assert crt.crt_reason(AwsCrtError(1, "AWS_X", "y")) == "AWS_X"
    assert crt.crt_reason(ValueError("bad: detail")) == "bad"
    assert crt.crt_reason(TimeoutError()) == "TimeoutError"
