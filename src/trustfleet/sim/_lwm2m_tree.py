"""The simulated LwM2M device's objects and the pure handling of LwM2M requests over them.

No I/O and no codec: the driver (``sim/lwm2m_device.py``) decodes CoAP and content formats,
calls :meth:`ObjectTree.handle` with a :class:`Request`, and encodes the :class:`Reply`. Objects:
0 Security and 1 Server (written by the bootstrap server), 3 Device, 3303 Temperature and
5 Firmware Update (OMA LwM2M 1.1 registry definitions).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "CONTENT",
    "FW_DOWNLOADED",
    "FW_DOWNLOADING",
    "FW_IDLE",
    "FW_UPDATING",
    "Action",
    "ObjectTree",
    "Reply",
    "Request",
    "ResourceValue",
]

ResourceValue = int | float | bool | str | bytes

# CoAP codes (RFC 7252 §12.1), as the codec's ``Code`` values.
CREATED, DELETED, CHANGED, CONTENT = 65, 66, 68, 69
BAD_REQUEST, UNAUTHORIZED, NOT_FOUND, METHOD_NOT_ALLOWED = 128, 129, 132, 133
GET, POST, PUT, DELETE = 1, 2, 3, 4

# Firmware Update object 5 states and results (LwM2M 1.1 Core, E.6).
FW_IDLE, FW_DOWNLOADING, FW_DOWNLOADED, FW_UPDATING = 0, 1, 2, 3
RESULT_INITIAL, RESULT_SUCCESS, RESULT_INTEGRITY, RESULT_UNSUPPORTED = 0, 1, 5, 6
RESULT_URI_INVALID, RESULT_UPDATE_FAILED = 7, 8

_WRITABLE = {(1, 1), (1, 3), (3303, 5750), (5, 1)}
_EXECUTABLE = {(3, 4), (1, 8), (5, 2)}
_BOOTSTRAP_OBJECTS = {0, 1}


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """One decoded LwM2M request.

    Attributes:
        method: CoAP method code (GET 1, POST 2, PUT 3, DELETE 4).
        path: The LwM2M path as integers (``()`` is the root, at most 3 levels used).
        values: Decoded resource values of a write, keyed by (object, instance, resource).
        bootstrap: Whether the request comes from the bootstrap server (may write /0 and /1).
    """

    method: int
    path: tuple[int, ...]
    values: tuple[tuple[tuple[int, int, int], ResourceValue], ...] = ()
    bootstrap: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """The answer: a CoAP code and, for reads, the values under the path."""

    code: int
    values: tuple[tuple[tuple[int, int, int], ResourceValue], ...] = ()


@dataclass(frozen=True, slots=True)
class Action:
    """Something the driver must do after a request: download, update (install), reboot."""

    kind: Literal["download", "update", "reboot", "bootstrap_finished"]
    argument: str = ""


@dataclass(slots=True, kw_only=True)
class ObjectTree:
    """The device's object instances; resources are plain values keyed by (obj, inst, res)."""

    manufacturer: str
    model: str
    serial: str
    firmware_version: str
    resources: dict[tuple[int, int, int], ResourceValue] = field(default_factory=dict)
    actions: list[Action] = field(default_factory=list)
    max_values: int = 256

    def __post_init__(self) -> None:
        self.resources.update(
            {
                (3, 0, 0): self.manufacturer,
                (3, 0, 1): self.model,
                (3, 0, 2): self.serial,
                (3, 0, 3): self.firmware_version,
                (3, 0, 11): 0,
                (3303, 0, 5700): 21.5,
                (3303, 0, 5701): "Cel",
                (5, 0, 1): "",
                (5, 0, 3): FW_IDLE,
                (5, 0, 5): RESULT_INITIAL,
                (5, 0, 9): 1,  # delivery method: pull only
            }
        )

    # -- views -------------------------------------------------------------------------------

    def instances(self) -> list[tuple[int, int]]:
        """(object, instance) pairs present, sorted (the registration's object links)."""
        return sorted({(obj, inst) for obj, inst, _ in self.resources})

    def value(self, obj: int, inst: int, res: int) -> ResourceValue | None:
        """One resource value, or None."""
        return self.resources.get((obj, inst, res))

    def set_reading(self, celsius: float) -> None:
        """The temperature sensor's new reading (5700)."""
        self.resources[(3303, 0, 5700)] = round(celsius, 2)

    def set_firmware(self, *, state: int | None = None, result: int | None = None) -> None:
        """Move the Firmware Update object's State (5/0/3) and Update Result (5/0/5)."""
        if state is not None:
            self.resources[(5, 0, 3)] = state
        if result is not None:
            self.resources[(5, 0, 5)] = result

    def installed(self, version: str) -> None:
        """The new image runs: /3/0/3 is its version, State idle, Result success."""
        self.firmware_version = version
        self.resources[(3, 0, 3)] = version
        self.set_firmware(state=FW_IDLE, result=RESULT_SUCCESS)

    def take_actions(self) -> list[Action]:
        """The actions requested since the last call, oldest first."""
        actions, self.actions = self.actions, []
        return actions

    # -- requests ----------------------------------------------------------------------------

    def handle(self, request: Request) -> Reply:
        """Apply one request (Read, Write, Execute, Delete, Bootstrap-Finish) and answer it."""
        if len(request.path) > 3 or any(part < 0 or part > 65_535 for part in request.path):
            return Reply(code=BAD_REQUEST)
        if request.method == GET:
            return self._read(request.path)
        if request.method in (PUT, POST) and len(request.path) == 3 and not request.values:
            return self._execute(request)
        if request.method in (PUT, POST):
            return self._write(request)
        if request.method == DELETE:
            return self._delete(request)
        return Reply(code=METHOD_NOT_ALLOWED)

    def _selected(self, path: tuple[int, ...]) -> list[tuple[int, int, int]]:
        return sorted(key for key in self.resources if key[: len(path)] == path)

    def handle_read(self, path: tuple[int, ...]) -> Reply:
        """Read ``path`` (also what a notification of an observation carries)."""
        return self._read(path)

    def _read(self, path: tuple[int, ...]) -> Reply:
        if path and path[0] == 0:
            return Reply(code=UNAUTHORIZED)  # security object: never readable by a server
        keys = self._selected(path)
        if not keys or not path:
            return Reply(code=NOT_FOUND if path else METHOD_NOT_ALLOWED)
        return Reply(code=CONTENT, values=tuple((key, self.resources[key]) for key in keys))

    def _execute(self, request: Request) -> Reply:
        obj, _, res = request.path
        if (obj, res) not in _EXECUTABLE or request.bootstrap:
            return Reply(code=METHOD_NOT_ALLOWED)
        if (obj, res) == (5, 2):
            if self.resources[(5, 0, 3)] != FW_DOWNLOADED:
                return Reply(code=METHOD_NOT_ALLOWED)
            self.set_firmware(state=FW_UPDATING)
            self.actions.append(Action("update"))
        elif (obj, res) == (3, 4):
            self.actions.append(Action("reboot"))
        return Reply(code=CHANGED)

    def _write(self, request: Request) -> Reply:
        if len(request.values) > self.max_values or not request.path:
            return Reply(code=BAD_REQUEST)
        obj = request.path[0]
        for key, _ in request.values:
            if key[: len(request.path)] != request.path:
                return Reply(code=BAD_REQUEST)
            if obj in _BOOTSTRAP_OBJECTS and not request.bootstrap:
                return Reply(code=UNAUTHORIZED)
            if obj not in _BOOTSTRAP_OBJECTS and (key[0], key[2]) not in _WRITABLE:
                return Reply(code=METHOD_NOT_ALLOWED)
        for key, value in request.values:
            self.resources[key] = value
        if (5, 0, 1) in dict(request.values):
            return self._package_uri(str(dict(request.values)[(5, 0, 1)]))
        return Reply(code=CHANGED)

    def _package_uri(self, uri: str) -> Reply:
        if not uri:  # an empty URI cancels (LwM2M 1.1 E.6): back to idle
            self.set_firmware(state=FW_IDLE, result=RESULT_INITIAL)
            return Reply(code=CHANGED)
        if not uri.startswith(("coap://", "coaps://", "/")):
            self.set_firmware(state=FW_IDLE, result=RESULT_URI_INVALID)
            return Reply(code=BAD_REQUEST)
        self.set_firmware(state=FW_DOWNLOADING, result=RESULT_INITIAL)
        self.actions.append(Action("download", uri))
        return Reply(code=CHANGED)

    def _delete(self, request: Request) -> Reply:
        if not request.bootstrap:
            return Reply(code=METHOD_NOT_ALLOWED)
        doomed = [key for key in self.resources if key[0] in _BOOTSTRAP_OBJECTS]
        doomed = [key for key in doomed if key[: len(request.path)] == request.path]
        for key in doomed:
            del self.resources[key]
        return Reply(code=DELETED)

    def bootstrap_finish(self) -> Reply:
        """Bootstrap-Finish: accepted when a DM server's Security and Server instances exist."""
        dm = self.dm_server()
        if dm is None:
            return Reply(code=406 // 100 * 32 + 406 % 100)  # 4.06 Not Acceptable
        self.actions.append(Action("bootstrap_finished", dm[0]))
        return Reply(code=CHANGED)

    def dm_server(self) -> tuple[str, str, bytes] | None:
        """The written device-management server: (URI, PSK identity, PSK), or None."""
        for obj, inst, res in sorted(self.resources):
            if (obj, res) != (0, 0) or self.resources.get((0, inst, 1)) is True:
                continue
            uri = self.resources[(obj, inst, res)]
            identity = self.resources.get((0, inst, 3), b"")
            secret = self.resources.get((0, inst, 5), b"")
            identity_text = identity.decode() if isinstance(identity, bytes) else str(identity)
            return str(uri), identity_text, secret if isinstance(secret, bytes) else b""
        return None

    def __repr__(self) -> str:  # the Security object holds PSKs: never in a repr
        return f"ObjectTree(model={self.model!r}, firmware_version={self.firmware_version!r})"
