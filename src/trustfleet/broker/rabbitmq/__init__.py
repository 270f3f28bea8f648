"""RabbitMQ (3.10, MQTT plugin) as the device broker of several service hosts (ADR 0024).

:class:`RabbitBroker` attaches to an operator's cluster through its management API: one
certificate-login user per active device, namespace permissions, quarantine, connection closes
on revocation, and the CA bundle and hashed CRL folder every node reads.
"""

from trustfleet.broker.rabbitmq._broker import (
    CA_BUNDLE,
    CRL_DIR,
    RabbitBroker,
    RabbitConfig,
)
from trustfleet.broker.rabbitmq._mgmt import ManagementApi, ManagementEndpoint
from trustfleet.broker.rabbitmq._rules import (
    DEVICE_TAG,
    QUARANTINE_PREFIXES,
    DevicePermissions,
    crl_folder,
    device_permissions,
)

__all__ = [
    "CA_BUNDLE",
    "CRL_DIR",
    "DEVICE_TAG",
    "QUARANTINE_PREFIXES",
    "DevicePermissions",
    "ManagementApi",
    "ManagementEndpoint",
    "RabbitBroker",
    "RabbitConfig",
    "crl_folder",
    "device_permissions",
]
