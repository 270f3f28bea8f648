"""Commands to Mosquitto's dynamic-security plugin over the admin unix socket.

``mosquitto_ctrl`` would take the admin password on its command line, where ``ps`` shows it,
so commands go through paho-mqtt: connect as the admin, subscribe to the response topic,
publish one ``{"commands": [...]}`` document and wait (bounded) for the answer.
"""

from __future__ import annotations

import json
import logging
import queue
import secrets
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from trustfleet.errors import Unavailable

__all__ = ["CONTROL_TOPIC", "RESPONSE_TOPIC", "DynsecError", "run_commands"]

logger = logging.getLogger(__name__)

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = CONTROL_TOPIC + "/response"
_UNUSED_PORT = 1  # paho wants a positive port even for a unix socket
_MAX_RESPONSE_BYTES = 1024 * 1024


class DynsecError(Unavailable):
    """The broker answered a dynamic-security command with an error."""


def run_commands(
    socket_path: Path,
    commands: list[dict[str, Any]],
    *,
    username: str,
    password: str,
    timeout_s: float,
) -> list[dict[str, Any]]:
    """Send dynamic-security commands and return the plugin's responses, in order.

    Args:
        socket_path: The broker's admin unix socket.
        commands: Dynamic-security commands, e.g. ``{"command": "deleteClient", ...}``.
        username: The admin username.
        password: The admin password.
        timeout_s: Bound on each step (connect, subscribe, answer).

    Returns:
        One response object per command (``{"command": ..., "error": ...?}``).

    Raises:
        Unavailable: The broker cannot be reached, refused the admin, or did not answer.
    """
    inbox: queue.Queue[tuple[str, Any]] = queue.Queue()
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"tf-control-{secrets.token_hex(6)}",
        protocol=mqtt.MQTTv311,
        transport="unix",
    )
    client.username_pw_set(username, password)
    client.on_connect = lambda _c, _u, _f, rc, _p: inbox.put(("connect", rc))
    client.on_subscribe = lambda _c, _u, _m, rcs, _p: inbox.put(("subscribe", rcs))
    client.on_message = lambda _c, _u, msg: inbox.put(("message", msg.payload))
    client.on_disconnect = lambda _c, _u, _f, rc, _p: inbox.put(("disconnect", rc))
    try:
        client.connect(str(socket_path), port=_UNUSED_PORT, keepalive=max(5, int(timeout_s) * 2))
    except OSError as exc:
        raise Unavailable(
            "The broker's admin socket cannot be reached.",
            hint="Is the broker running?",
            code="broker.control.unreachable",
        ) from exc
    client.loop_start()
    try:
        return _exchange(client, inbox, commands, timeout_s=timeout_s)
    finally:
        client.disconnect()
        client.loop_stop()


def _exchange(
    client: mqtt.Client,
    inbox: queue.Queue[tuple[str, Any]],
    commands: list[dict[str, Any]],
    *,
    timeout_s: float,
) -> list[dict[str, Any]]:
    correlation = secrets.token_hex(8)
    for i, command in enumerate(commands):
        command["correlationData"] = f"{correlation}-{i}"
    _await(inbox, "connect", timeout_s=timeout_s, check=_connected)
    client.subscribe(RESPONSE_TOPIC, qos=1)
    _await(inbox, "subscribe", timeout_s=timeout_s, check=_subscribed)
    client.publish(CONTROL_TOPIC, json.dumps({"commands": commands}), qos=1)
    payload = _await(inbox, "message", timeout_s=timeout_s, check=lambda _p: None)
    if len(payload) > _MAX_RESPONSE_BYTES:
        raise Unavailable("The broker's control answer is too large.", code="broker.control")
    try:
        responses = json.loads(payload)["responses"]
        by_id = {r.get("correlationData"): r for r in responses}
        return [by_id[c["correlationData"]] for c in commands]
    except (ValueError, KeyError, TypeError) as exc:
        raise Unavailable(
            "The broker's control answer is malformed.", code="broker.control.malformed"
        ) from exc


def _connected(rc: Any) -> None:
    if isinstance(rc, ReasonCode) and rc.is_failure:
        logger.warning("broker admin connection refused: %s", rc)
        raise Unavailable(
            "The broker refused the admin connection.",
            hint="The broker's admin secret and its dynamic-security state disagree; "
            "restart the broker to rewrite the state.",
            code="broker.control.refused",
        )


def _subscribed(codes: Any) -> None:
    if any(isinstance(rc, ReasonCode) and rc.is_failure for rc in codes):
        raise Unavailable("The broker refused the control subscription.", code="broker.control")


def _await(inbox: queue.Queue[tuple[str, Any]], kind: str, *, timeout_s: float, check: Any) -> Any:
    try:
        while True:
            got, value = inbox.get(timeout=timeout_s)
            if got == kind:
                check(value)
                return value
            if got == "disconnect":
                raise Unavailable(
                    "The broker closed the admin connection.", code="broker.control.closed"
                )
    except queue.Empty as exc:
        raise Unavailable(
            f"The broker did not answer within {timeout_s} s ({kind}).",
            code="broker.control.timeout",
        ) from exc
