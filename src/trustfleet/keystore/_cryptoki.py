"""The few PKCS#11 calls python-pkcs11 does not offer, made through ctypes.

python-pkcs11 has no ``C_InitToken`` or ``C_InitPIN``, and its sessions log out on close, which
would log out every other session of the process on the same token (login state is per
application and token in PKCS#11). This module calls the module's function list directly for
token initialisation and for login and logout. It is generic PKCS#11, not SoftHSM-specific.

Errors are raised as :class:`CkError` carrying the return value; the adapter in ``_translate``
turns them into TrustFleet errors. PINs are passed as bytes buffers and never stored.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path

from trustfleet.errors import InvalidInput

CK_ULONG = ctypes.c_ulong
CK_RV = ctypes.c_ulong
CK_BBOOL = ctypes.c_ubyte
_UTF8_P = ctypes.c_char_p

CKR_OK = 0x000
CKR_CRYPTOKI_ALREADY_INITIALIZED = 0x191
CKR_USER_ALREADY_LOGGED_IN = 0x100
CKR_USER_NOT_LOGGED_IN = 0x101
CKF_TOKEN_INITIALIZED = 0x400
CKF_RW_SESSION = 0x2
CKF_SERIAL_SESSION = 0x4
CKU_SO = 0
CKU_USER = 1
LABEL_BYTES = 32
MAX_KEY_LABEL_CHARS = 128
"""The longest key label (UTF-8 bytes) the keystore gives an object."""


def check_label(label: str, what: str, max_bytes: int) -> None:
    """A token or key label: 1 to ``max_bytes`` bytes of UTF-8.

    Raises:
        InvalidInput: Empty or too long.
    """
    if not label or len(label.encode("utf-8")) > max_bytes:
        raise InvalidInput(f"{what} must be 1 to {max_bytes} bytes of UTF-8")


# The v2.x function list, in the order of the standard, up to the last function we use.
_FUNCTION_NAMES = (
    "C_Initialize",
    "C_Finalize",
    "C_GetInfo",
    "C_GetFunctionList",
    "C_GetSlotList",
    "C_GetSlotInfo",
    "C_GetTokenInfo",
    "C_GetMechanismList",
    "C_GetMechanismInfo",
    "C_InitToken",
    "C_InitPIN",
    "C_SetPIN",
    "C_OpenSession",
    "C_CloseSession",
    "C_CloseAllSessions",
    "C_GetSessionInfo",
    "C_GetOperationState",
    "C_SetOperationState",
    "C_Login",
    "C_Logout",
)


class _Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_ubyte), ("minor", ctypes.c_ubyte)]


class _FunctionList(ctypes.Structure):
    _fields_ = [("version", _Version)] + [(name, ctypes.c_void_p) for name in _FUNCTION_NAMES]


class _TokenInfo(ctypes.Structure):
    _fields_ = [
        ("label", ctypes.c_char * 32),
        ("manufacturerID", ctypes.c_char * 32),
        ("model", ctypes.c_char * 16),
        ("serialNumber", ctypes.c_char * 16),
        ("flags", CK_ULONG),
        ("ulMaxSessionCount", CK_ULONG),
        ("ulSessionCount", CK_ULONG),
        ("ulMaxRwSessionCount", CK_ULONG),
        ("ulRwSessionCount", CK_ULONG),
        ("ulMaxPinLen", CK_ULONG),
        ("ulMinPinLen", CK_ULONG),
        ("ulTotalPublicMemory", CK_ULONG),
        ("ulFreePublicMemory", CK_ULONG),
        ("ulTotalPrivateMemory", CK_ULONG),
        ("ulFreePrivateMemory", CK_ULONG),
        ("hardwareVersion", _Version),
        ("firmwareVersion", _Version),
        ("utcTime", ctypes.c_char * 16),
    ]


_PROTOTYPES = {
    "C_Initialize": ctypes.CFUNCTYPE(CK_RV, ctypes.c_void_p),
    "C_GetSlotList": ctypes.CFUNCTYPE(
        CK_RV, CK_BBOOL, ctypes.POINTER(CK_ULONG), ctypes.POINTER(CK_ULONG)
    ),
    "C_GetTokenInfo": ctypes.CFUNCTYPE(CK_RV, CK_ULONG, ctypes.POINTER(_TokenInfo)),
    "C_InitToken": ctypes.CFUNCTYPE(CK_RV, CK_ULONG, _UTF8_P, CK_ULONG, _UTF8_P),
    "C_InitPIN": ctypes.CFUNCTYPE(CK_RV, CK_ULONG, _UTF8_P, CK_ULONG),
    "C_OpenSession": ctypes.CFUNCTYPE(
        CK_RV, CK_ULONG, CK_ULONG, ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(CK_ULONG)
    ),
    "C_CloseSession": ctypes.CFUNCTYPE(CK_RV, CK_ULONG),
    "C_Login": ctypes.CFUNCTYPE(CK_RV, CK_ULONG, CK_ULONG, _UTF8_P, CK_ULONG),
    "C_Logout": ctypes.CFUNCTYPE(CK_RV, CK_ULONG),
}


class CkError(Exception):
    """A PKCS#11 function returned something other than ``CKR_OK``.

    Args:
        function: The PKCS#11 function name.
        rv: The return value.
    """

    def __init__(self, function: str, rv: int) -> None:
        super().__init__(f"{function} returned CKR 0x{rv:08x}")
        self.function = function
        self.rv = rv


@dataclass(frozen=True)
class TokenSlot:
    """What ``C_GetTokenInfo`` says about the token in one slot."""

    slot_id: int
    label: str
    initialized: bool


def pad_label(label: str) -> bytes:
    """Encode a token label as the 32-byte, blank-padded field PKCS#11 wants."""
    raw = label.encode("utf-8")
    if len(raw) > LABEL_BYTES:
        raise ValueError(f"token label is longer than {LABEL_BYTES} bytes in UTF-8")
    return raw.ljust(LABEL_BYTES, b" ")


class Cryptoki:
    """Direct access to a module's function list (same library handle as python-pkcs11).

    Args:
        module: Path of the PKCS#11 shared library.
    """

    def __init__(self, module: Path) -> None:
        self._dll = ctypes.CDLL(str(module))
        get_list = self._dll.C_GetFunctionList
        get_list.restype = CK_RV
        get_list.argtypes = [ctypes.POINTER(ctypes.POINTER(_FunctionList))]
        pointer = ctypes.POINTER(_FunctionList)()
        self._check("C_GetFunctionList", get_list(ctypes.byref(pointer)))
        self._functions = pointer.contents

    def _call(self, name: str, *args: object) -> int:
        address = getattr(self._functions, name)
        if not address:
            raise CkError(name, 0x54)  # CKR_FUNCTION_NOT_SUPPORTED
        return int(_PROTOTYPES[name](address)(*args))

    @staticmethod
    def _check(name: str, rv: int, *tolerated: int) -> int:
        if rv != CKR_OK and rv not in tolerated:
            raise CkError(name, rv)
        return rv

    def initialize(self) -> None:
        """``C_Initialize``; a module initialised already (by python-pkcs11) is fine."""
        rv = self._call("C_Initialize", None)
        self._check("C_Initialize", rv, CKR_CRYPTOKI_ALREADY_INITIALIZED)

    def token_slots(self) -> list[TokenSlot]:
        """Every slot with a token present, with its label and initialised flag."""
        count = CK_ULONG(0)
        self._check("C_GetSlotList", self._call("C_GetSlotList", 1, None, ctypes.byref(count)))
        ids = (CK_ULONG * max(count.value, 1))()
        self._check("C_GetSlotList", self._call("C_GetSlotList", 1, ids, ctypes.byref(count)))
        slots = []
        for slot_id in ids[: count.value]:
            info = _TokenInfo()
            rv = self._call("C_GetTokenInfo", slot_id, ctypes.byref(info))
            self._check("C_GetTokenInfo", rv)
            label = bytes(info.label).decode("utf-8", "replace").rstrip(" \x00")
            initialized = bool(info.flags & CKF_TOKEN_INITIALIZED)
            slots.append(TokenSlot(slot_id=int(slot_id), label=label, initialized=initialized))
        return slots

    def init_token(self, slot_id: int, *, so_pin: str, label: str) -> None:
        """``C_InitToken`` on a slot."""
        pin = so_pin.encode("utf-8")
        rv = self._call("C_InitToken", slot_id, pin, len(pin), pad_label(label))
        self._check("C_InitToken", rv)

    def open_session(self, slot_id: int) -> int:
        """``C_OpenSession`` read-write; returns the session handle."""
        handle = CK_ULONG(0)
        flags = CKF_RW_SESSION | CKF_SERIAL_SESSION
        rv = self._call("C_OpenSession", slot_id, flags, None, None, ctypes.byref(handle))
        self._check("C_OpenSession", rv)
        return int(handle.value)

    def close_session(self, handle: int) -> None:
        """``C_CloseSession``."""
        self._check("C_CloseSession", self._call("C_CloseSession", handle))

    def login(self, handle: int, *, user_type: int, pin: str) -> None:
        """``C_Login``."""
        raw = pin.encode("utf-8")
        self._check("C_Login", self._call("C_Login", handle, user_type, raw, len(raw)))

    def logout(self, handle: int) -> None:
        """``C_Logout``; a session not logged in is fine."""
        self._check("C_Logout", self._call("C_Logout", handle), CKR_USER_NOT_LOGGED_IN)

    def init_pin(self, handle: int, *, pin: str) -> None:
        """``C_InitPIN`` (the SO must be logged in on the session)."""
        raw = pin.encode("utf-8")
        self._check("C_InitPIN", self._call("C_InitPIN", handle, raw, len(raw)))
