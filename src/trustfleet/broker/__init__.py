"""The MQTT broker: Mosquitto configured from a server home and supervised.

Devices connect with mutual TLS 1.3 and their LDevID. TrustFleet's guard plugin (C, built from
``plugin/tf_guard.c``) makes the certificate CN the MQTT username, refuses any client id but the
CN (services: ``<CN>-<suffix>``), and confines each device to ``tf/v1/d/<device-id>/``: no
``$share``, no wildcard above its level, no retained messages, bounded payload and rate. Fleet
services (named certificate CNs) read every device's topics and write every ``cmd``. The
device CA's CRL is checked at every handshake and reloaded on demand; live connections of a
revoked device are ended through the dynamic-security plugin. Mosquitto runs as an
unprivileged user. See docs/adr/0003-broker.md and docs/adr/0011-broker-guard.md.
"""

from trustfleet.broker._config import (
    ADMIN_USERNAME,
    DEVICE_TOPIC_ROOT,
    UNPRIVILEGED_USER,
    BrokerConfig,
    BrokerPaths,
    render_acl,
    render_mosquitto_conf,
)
from trustfleet.broker._port import DeviceBroker, SyncReport
from trustfleet.broker._supervisor import Broker
from trustfleet.broker._trust import BrokerCa, TrustFiles, render_trust, subject_hash

__all__ = [
    "ADMIN_USERNAME",
    "DEVICE_TOPIC_ROOT",
    "UNPRIVILEGED_USER",
    "Broker",
    "BrokerCa",
    "BrokerConfig",
    "BrokerPaths",
    "DeviceBroker",
    "SyncReport",
    "TrustFiles",
    "render_acl",
    "render_mosquitto_conf",
    "render_trust",
    "subject_hash",
]
