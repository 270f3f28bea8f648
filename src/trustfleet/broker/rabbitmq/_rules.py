"""What RabbitMQ must hold for TrustFleet, as pure functions: device permissions, CRL folder.

RabbitMQ's MQTT plugin maps an MQTT topic onto a routing key of the ``amq.topic`` exchange
(``/`` becomes ``.``), authorises a publish against the user's *topic* write permission and a
subscription against its topic read permission (regular expressions over the routing key), and
keeps each MQTT session's messages in a queue ``mqtt-subscription-<client id>qos<0|1>`` that the
user must be allowed to configure, write and read. The rules below give a device its own
namespace and nothing else, as the Mosquitto guard does (docs/mqtt.md): it writes its
device-to-service kinds, reads its service-to-device kinds, and a quarantined device keeps only
its ``ota/`` and ``attest/`` topics (:data:`trustfleet.broker.QUARANTINE_LEAVES` on Mosquitto).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from trustfleet.broker._files import crl_pem
from trustfleet.broker._trust import BrokerCa, subject_hash
from trustfleet.errors import Config
from trustfleet.wire import (
    DEVICE_ID_PATTERN,
    DEVICE_TO_SERVICE,
    DEVICE_TOPIC_ROOT,
    SERVICE_TO_DEVICE,
    amqp_routing_key,
)

__all__ = [
    "DEVICE_TAG",
    "QUARANTINE_PREFIXES",
    "DevicePermissions",
    "crl_folder",
    "device_permissions",
]

DEVICE_TAG: Final = "tf-device"
"""The RabbitMQ user tag of every device user TrustFleet made (it manages only those)."""
QUARANTINE_PREFIXES: Final = ("ota", "attest")
"""What a quarantined device keeps (the same as on Mosquitto)."""


@dataclass(frozen=True, slots=True)
class DevicePermissions:
    """One device user's permissions (regular expressions, as RabbitMQ takes them).

    Attributes:
        configure: Resources (queues, exchanges) of the vhost it may declare or delete.
        write: Resources it may publish to.
        read: Resources it may consume from or bind.
        topic_write: Routing keys of ``amq.topic`` it may publish with.
        topic_read: Routing keys of ``amq.topic`` it may subscribe to.
    """

    configure: str
    write: str
    read: str
    topic_write: str
    topic_read: str


def _kinds(device_id: str, kinds: Sequence[str]) -> str:
    root = re.escape(amqp_routing_key(f"{DEVICE_TOPIC_ROOT}/{device_id}"))
    alternatives = "|".join(re.escape(amqp_routing_key(k)) for k in kinds)
    return f"^{root}\\.({alternatives})$"


def device_permissions(device_id: str, *, quarantined: bool = False) -> DevicePermissions:
    """The permissions of the device user ``device_id`` (its certificate's CN).

    Raises:
        Config: ``device_id`` is not a device id.
    """
    if not DEVICE_ID_PATTERN.fullmatch(device_id):
        raise Config(f"{device_id[:70]!r} is not a device id", code="broker.rabbitmq.device_id")
    session = f"^mqtt-subscription-{re.escape(device_id)}qos[01]$"
    own = f"^(amq\\.topic|mqtt-subscription-{re.escape(device_id)}qos[01])$"
    writes: Sequence[str] = DEVICE_TO_SERVICE
    reads: Sequence[str] = SERVICE_TO_DEVICE
    if quarantined:
        writes = [k for k in writes if k.split("/")[0] in QUARANTINE_PREFIXES]
        reads = [k for k in reads if k.split("/")[0] in QUARANTINE_PREFIXES]
    return DevicePermissions(
        configure=session,
        write=own,
        read=own,
        topic_write=_kinds(device_id, writes),
        topic_read=_kinds(device_id, reads),
    )


def crl_folder(cas: Sequence[BrokerCa]) -> dict[str, bytes]:
    """The files of a hashed CRL folder for ``cas``: ``<issuer hash>.r<n>`` to PEM.

    RabbitMQ's ``ssl_crl_hash_dir`` CRL cache (Erlang's ``ssl``) finds a certificate's CRL by
    its issuer's name hash in such a folder, as ``openssl rehash`` names them.

    Raises:
        InvalidInput: A CRL is malformed or too large.
        VerificationFailed: A CRL is not its CA's.
    """
    files: dict[str, bytes] = {}
    for ca in cas:
        base = subject_hash(ca.cert)
        n = sum(1 for name in files if name.startswith(base + "."))
        files[f"{base}.r{n}"] = crl_pem(ca.crl_der, issuer=ca.cert)
    return files
