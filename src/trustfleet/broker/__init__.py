"""The MQTT broker: Mosquitto configured from a server home and supervised.

Devices connect with mutual TLS 1.3 and their LDevID; the certificate CN is the MQTT
username, and an ACL pattern confines each device to ``tf/v1/d/<device-id>/#``. Fleet
services (named certificate CNs) read every device's topics and write every ``cmd``. The
device CA's CRL is checked at every handshake and reloaded on demand; live connections of a
revoked device are ended through the dynamic-security plugin. See docs/adr/0003-broker.md.
"""

from trustfleet.broker._config import (
    ADMIN_USERNAME,
    DEVICE_TOPIC_ROOT,
    BrokerConfig,
    BrokerPaths,
    render_acl,
    render_mosquitto_conf,
)
from trustfleet.broker._supervisor import Broker

__all__ = [
    "ADMIN_USERNAME",
    "DEVICE_TOPIC_ROOT",
    "Broker",
    "BrokerConfig",
    "BrokerPaths",
    "render_acl",
    "render_mosquitto_conf",
]
