"""LwM2M object and resource definitions, and LwM2M paths (OMA LwM2M 1.1 TS Core §7, Appendix E).

The definitions give each resource its data type, which the TLV decoder needs (TLV carries no
types) and the SenML decoders use to tell an integer from a float. Covered: 0 Security,
1 Server, 3 Device, 4 Connectivity Monitoring, 5 Firmware Update, 6 Location, 7 Connectivity
Statistics, 3303 Temperature (IPSO) and 31024, the test object of Wakaama's example client.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from trustfleet.errors import InvalidInput

__all__ = [
    "MAX_ID",
    "OBJECTS",
    "LwM2MPath",
    "ObjectDef",
    "PathError",
    "Resource",
    "ResourceType",
    "resource_def",
]

MAX_ID = 65535
_PATH = re.compile(r"/?(?:\d{1,5}(?:/\d{1,5}){0,3})?")


class PathError(InvalidInput):
    """An LwM2M path is malformed or out of range."""

    def __init__(self, text: str) -> None:
        super().__init__(f"Not an LwM2M path: {text[:40]!r}", code="lwm2m.path.malformed")


class ResourceType(StrEnum):
    """Resource data types (TS Core Appendix C)."""

    STRING = "string"
    INTEGER = "integer"
    UNSIGNED = "unsigned"
    FLOAT = "float"
    BOOLEAN = "boolean"
    OPAQUE = "opaque"
    TIME = "time"
    OBJLNK = "objlnk"
    CORELNK = "corelnk"
    NONE = "none"  # executable resources carry no value


@dataclass(frozen=True, slots=True)
class Resource:
    """One resource definition: id, name, type, multiple instances, operations (R, W, RW, E)."""

    id: int
    name: str
    type: ResourceType
    multiple: bool = False
    operations: str = "R"


@dataclass(frozen=True, slots=True)
class ObjectDef:
    """One object definition."""

    id: int
    name: str
    multiple_instances: bool
    resources: Mapping[int, Resource]


_STR, _INT, _UINT = ResourceType.STRING, ResourceType.INTEGER, ResourceType.UNSIGNED
_FLT, _BOOL, _OPQ = ResourceType.FLOAT, ResourceType.BOOLEAN, ResourceType.OPAQUE
_TIME, _LNK, _NONE = ResourceType.TIME, ResourceType.OBJLNK, ResourceType.NONE

_R = tuple[int, str, ResourceType, bool, str]


def _obj(oid: int, name: str, multiple: bool, rows: list[_R]) -> ObjectDef:
    resources = {r[0]: Resource(r[0], r[1], r[2], r[3], r[4]) for r in rows}
    return ObjectDef(oid, name, multiple, MappingProxyType(resources))


_SECURITY: list[_R] = [
    (0, "LwM2M Server URI", _STR, False, "W"),
    (1, "Bootstrap-Server", _BOOL, False, "W"),
    (2, "Security Mode", _INT, False, "W"),
    (3, "Public Key or Identity", _OPQ, False, "W"),
    (4, "Server Public Key", _OPQ, False, "W"),
    (5, "Secret Key", _OPQ, False, "W"),
    (6, "SMS Security Mode", _INT, False, "W"),
    (7, "SMS Binding Key Parameters", _OPQ, False, "W"),
    (8, "SMS Binding Secret Key(s)", _OPQ, False, "W"),
    (9, "LwM2M Server SMS Number", _STR, False, "W"),
    (10, "Short Server ID", _INT, False, "W"),
    (11, "Client Hold Off Time", _INT, False, "W"),
    (12, "Bootstrap-Server Account Timeout", _INT, False, "W"),
    (13, "Matching Type", _UINT, False, "W"),
    (14, "SNI", _STR, False, "W"),
    (15, "Certificate Usage", _UINT, False, "W"),
    (16, "DTLS/TLS Ciphersuite", _UINT, True, "W"),
    (17, "OSCORE Security Mode", _LNK, False, "W"),
]
_SERVER: list[_R] = [
    (0, "Short Server ID", _INT, False, "R"),
    (1, "Lifetime", _INT, False, "RW"),
    (2, "Default Minimum Period", _INT, False, "RW"),
    (3, "Default Maximum Period", _INT, False, "RW"),
    (4, "Disable", _NONE, False, "E"),
    (5, "Disable Timeout", _INT, False, "RW"),
    (6, "Notification Storing When Disabled or Offline", _BOOL, False, "RW"),
    (7, "Binding", _STR, False, "RW"),
    (8, "Registration Update Trigger", _NONE, False, "E"),
    (9, "Bootstrap-Request Trigger", _NONE, False, "E"),
    (10, "APN Link", _LNK, False, "RW"),
    (11, "TLS-DTLS Alert Code", _UINT, False, "R"),
    (12, "Last Bootstrapped", _TIME, False, "R"),
    (13, "Registration Priority Order", _UINT, False, "W"),
    (14, "Initial Registration Delay Timer", _UINT, False, "W"),
    (15, "Registration Failure Block", _BOOL, False, "W"),
    (16, "Bootstrap on Registration Failure", _BOOL, False, "W"),
    (17, "Communication Retry Count", _UINT, False, "W"),
    (18, "Communication Retry Timer", _UINT, False, "W"),
    (19, "Communication Sequence Delay Timer", _UINT, False, "W"),
    (20, "Communication Sequence Retry Count", _UINT, False, "W"),
    (21, "Trigger", _BOOL, False, "RW"),
    (22, "Preferred Transport", _STR, False, "RW"),
    (23, "Mute Send", _BOOL, False, "RW"),
]
_DEVICE: list[_R] = [
    (0, "Manufacturer", _STR, False, "R"),
    (1, "Model Number", _STR, False, "R"),
    (2, "Serial Number", _STR, False, "R"),
    (3, "Firmware Version", _STR, False, "R"),
    (4, "Reboot", _NONE, False, "E"),
    (5, "Factory Reset", _NONE, False, "E"),
    (6, "Available Power Sources", _INT, True, "R"),
    (7, "Power Source Voltage", _INT, True, "R"),
    (8, "Power Source Current", _INT, True, "R"),
    (9, "Battery Level", _INT, False, "R"),
    (10, "Memory Free", _INT, False, "R"),
    (11, "Error Code", _INT, True, "R"),
    (12, "Reset Error Code", _NONE, False, "E"),
    (13, "Current Time", _TIME, False, "RW"),
    (14, "UTC Offset", _STR, False, "RW"),
    (15, "Timezone", _STR, False, "RW"),
    (16, "Supported Binding and Modes", _STR, False, "R"),
    (17, "Device Type", _STR, False, "R"),
    (18, "Hardware Version", _STR, False, "R"),
    (19, "Software Version", _STR, False, "R"),
    (20, "Battery Status", _INT, False, "R"),
    (21, "Memory Total", _INT, False, "R"),
    (22, "ExtDevInfo", _LNK, True, "R"),
]
_CONN_MONITORING: list[_R] = [
    (0, "Network Bearer", _INT, False, "R"),
    (1, "Available Network Bearer", _INT, True, "R"),
    (2, "Radio Signal Strength", _INT, False, "R"),
    (3, "Link Quality", _INT, False, "R"),
    (4, "IP Addresses", _STR, True, "R"),
    (5, "Router IP Addresses", _STR, True, "R"),
    (6, "Link Utilization", _INT, False, "R"),
    (7, "APN", _STR, True, "R"),
    (8, "Cell ID", _INT, False, "R"),
    (9, "SMNC", _INT, False, "R"),
    (10, "SMCC", _INT, False, "R"),
]
_FIRMWARE: list[_R] = [
    (0, "Package", _OPQ, False, "W"),
    (1, "Package URI", _STR, False, "RW"),
    (2, "Update", _NONE, False, "E"),
    (3, "State", _INT, False, "R"),
    (5, "Update Result", _INT, False, "R"),
    (6, "PkgName", _STR, False, "R"),
    (7, "PkgVersion", _STR, False, "R"),
    (8, "Firmware Update Protocol Support", _INT, True, "R"),
    (9, "Firmware Update Delivery Method", _INT, False, "R"),
]
_LOCATION: list[_R] = [
    (0, "Latitude", _FLT, False, "R"),
    (1, "Longitude", _FLT, False, "R"),
    (2, "Altitude", _FLT, False, "R"),
    (3, "Radius", _FLT, False, "R"),
    (4, "Velocity", _OPQ, False, "R"),
    (5, "Timestamp", _TIME, False, "R"),
    (6, "Speed", _FLT, False, "R"),
]
_CONN_STATISTICS: list[_R] = [
    (0, "SMS Tx Counter", _INT, False, "R"),
    (1, "SMS Rx Counter", _INT, False, "R"),
    (2, "Tx Data", _INT, False, "R"),
    (3, "Rx Data", _INT, False, "R"),
    (4, "Max Message Size", _INT, False, "R"),
    (5, "Average Message Size", _INT, False, "R"),
    (6, "Start", _NONE, False, "E"),
    (7, "Stop", _NONE, False, "E"),
    (8, "Collection Period", _INT, False, "RW"),
]
_TEMPERATURE: list[_R] = [
    (5518, "Timestamp", _TIME, False, "R"),
    (5601, "Min Measured Value", _FLT, False, "R"),
    (5602, "Max Measured Value", _FLT, False, "R"),
    (5603, "Min Range Value", _FLT, False, "R"),
    (5604, "Max Range Value", _FLT, False, "R"),
    (5605, "Reset Min and Max Measured Values", _NONE, False, "E"),
    (5700, "Sensor Value", _FLT, False, "R"),
    (5701, "Sensor Units", _STR, False, "R"),
    (5750, "Application Type", _STR, False, "RW"),
    (5821, "Current Calibration", _FLT, False, "RW"),
    (6042, "Measurement Quality Level", _INT, False, "R"),
    (6050, "Measurement Quality Indicator", _INT, False, "R"),
]
_WAKAAMA_TEST: list[_R] = [
    (1, "test", _INT, False, "RW"),
    (2, "exec", _NONE, False, "E"),
    (3, "dec", _FLT, False, "RW"),
    (5, "str", _STR, False, "RW"),
]

OBJECTS: Mapping[int, ObjectDef] = MappingProxyType(
    {
        o.id: o
        for o in (
            _obj(0, "LwM2M Security", True, _SECURITY),
            _obj(1, "LwM2M Server", True, _SERVER),
            _obj(3, "Device", False, _DEVICE),
            _obj(4, "Connectivity Monitoring", False, _CONN_MONITORING),
            _obj(5, "Firmware Update", False, _FIRMWARE),
            _obj(6, "Location", False, _LOCATION),
            _obj(7, "Connectivity Statistics", False, _CONN_STATISTICS),
            _obj(3303, "Temperature", True, _TEMPERATURE),
            _obj(31024, "Wakaama test object", True, _WAKAAMA_TEST),
        )
    }
)


def resource_def(object_id: int, resource_id: int) -> Resource | None:
    """The definition of a resource, or None if the object or the resource is unknown."""
    obj = OBJECTS.get(object_id)
    return None if obj is None else obj.resources.get(resource_id)


@dataclass(frozen=True, slots=True)
class LwM2MPath:
    """An LwM2M path: ``()`` is ``/``, then object, instance, resource, resource instance ids."""

    ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if len(self.ids) > 4 or any(not 0 <= i <= MAX_ID for i in self.ids):
            raise PathError(str(self.ids))

    @classmethod
    def parse(cls, text: str) -> LwM2MPath:
        """Parse ``/3/0/0`` (the leading ``/`` optional; ``/`` alone is the root).

        Raises:
            PathError: not 0 to 4 decimal ids in 0..65535.
        """
        if len(text) > 24 or not _PATH.fullmatch(text):
            raise PathError(text)
        return cls(tuple(int(part) for part in text.split("/") if part))

    @classmethod
    def of_segments(cls, segments: tuple[str, ...]) -> LwM2MPath:
        """From CoAP Uri-Path segments (``("3", "0")``)."""
        return cls.parse("/" + "/".join(segments))

    def __str__(self) -> str:
        return "/" + "/".join(str(i) for i in self.ids)

    @property
    def depth(self) -> int:
        """0 root, 1 object, 2 instance, 3 resource, 4 resource instance."""
        return len(self.ids)

    @property
    def object_id(self) -> int | None:
        """The object id, if any."""
        return self.ids[0] if self.ids else None

    @property
    def instance_id(self) -> int | None:
        """The object instance id, if any."""
        return self.ids[1] if len(self.ids) > 1 else None

    @property
    def resource_id(self) -> int | None:
        """The resource id, if any."""
        return self.ids[2] if len(self.ids) > 2 else None

    @property
    def resource_instance_id(self) -> int | None:
        """The resource instance id, if any."""
        return self.ids[3] if len(self.ids) > 3 else None

    def child(self, child_id: int) -> LwM2MPath:
        """This path one level down."""
        return LwM2MPath((*self.ids, child_id))

    def contains(self, other: LwM2MPath) -> bool:
        """Whether ``other`` is this path or below it."""
        return other.ids[: len(self.ids)] == self.ids

    def resource(self) -> Resource | None:
        """The resource definition of this path (depth 3 or 4), if known."""
        if len(self.ids) < 3:
            return None
        return resource_def(self.ids[0], self.ids[2])
