"""The one place where python-pkcs11 and ctypes errors become TrustFleet errors.

Messages name the token and the operation, never a PIN or key material.
"""

from __future__ import annotations

from collections.abc import Callable

import pkcs11.exceptions as p11e

from trustfleet.errors import (
    Config,
    Conflict,
    NotFound,
    PermissionDenied,
    TrustFleetError,
    Unavailable,
)
from trustfleet.keystore._cryptoki import CkError

_PIN_ERRORS = (
    p11e.PinIncorrect,
    p11e.PinInvalid,
    p11e.PinLenRange,
    p11e.PinExpired,
    p11e.PinLocked,
    p11e.UserNotLoggedIn,
)
# CKR_PIN_INCORRECT, _INVALID, _LEN_RANGE, _EXPIRED, _LOCKED, CKR_USER_NOT_LOGGED_IN
_PIN_RVS = frozenset({0xA0, 0xA1, 0xA2, 0xA3, 0xA4, 0x101})
_LOGIN_HINT = (
    "check that the PIN source holds the user PIN of this token; too many wrong PINs lock the token"
)
# CKR_SLOT_ID_INVALID, CKR_TOKEN_NOT_PRESENT, CKR_TOKEN_NOT_RECOGNIZED
_NO_TOKEN_RVS = frozenset({0x03, 0xE0, 0xE1})


def login_failed(token: str) -> PermissionDenied:
    """The single error for a failed login; the detail stays out of it."""
    return PermissionDenied(
        f"token login failed for token '{token}'", hint=_LOGIN_HINT, code="keystore.login"
    )


def translate(exc: Exception, *, action: str, token: str | None = None) -> TrustFleetError:
    """Turn a python-pkcs11 or ctypes error into a TrustFleet error.

    Args:
        exc: The third-party exception.
        action: What we were doing, e.g. ``"opening a session"``.
        token: The token label, if known.

    Returns:
        The TrustFleet error to raise ``from exc``.
    """
    where = f" on token '{token}'" if token is not None else ""
    if isinstance(exc, CkError):
        return _translate_rv(exc, action=action, token=token, where=where)
    if isinstance(exc, _PIN_ERRORS):
        return login_failed(token or "?")
    for types, make in _BY_TYPE:
        if isinstance(exc, types):
            return make(type(exc).__name__, action, token, where)
    return Unavailable(
        f"PKCS#11 error {type(exc).__name__} while {action}{where}",
        hint="check that the module and its token are reachable",
        code="keystore.pkcs11",
    )


_Make = Callable[[str, str, "str | None", str], TrustFleetError]
_BY_TYPE: tuple[tuple[tuple[type[Exception], ...], _Make], ...] = (
    (
        (p11e.NoSuchToken,),
        lambda _n, _a, token, _w: NotFound(
            f"no PKCS#11 token labelled '{token}'",
            hint="check the token label and the module configuration (SOFTHSM2_CONF)",
            code="keystore.token.not_found",
        ),
    ),
    (
        (p11e.NoSuchKey,),
        lambda _n, _a, _t, where: NotFound(f"no such key{where}", code="keystore.key.not_found"),
    ),
    (
        (p11e.MultipleObjectsReturned, p11e.MultipleTokensReturned),
        lambda _n, action, _t, where: Conflict(
            f"more than one match while {action}{where}", hint="use a unique label"
        ),
    ),
    (
        (p11e.AttributeSensitive, p11e.KeyUnextractable),
        lambda _n, _a, _t, where: Config(f"key is non-extractable and lives in the token{where}"),
    ),
    (
        (p11e.MechanismInvalid, p11e.FunctionNotSupported),
        lambda name, action, _t, where: Config(
            f"the PKCS#11 module does not support this ({name}) while {action}{where}"
        ),
    ),
)


def _translate_rv(exc: CkError, *, action: str, token: str | None, where: str) -> TrustFleetError:
    if exc.rv in _PIN_RVS:
        return login_failed(token or "?")
    if exc.rv in _NO_TOKEN_RVS:
        return NotFound(f"token not present while {action}{where}", hint="check the slot")
    if exc.rv == 0x54:  # CKR_FUNCTION_NOT_SUPPORTED
        return Config(f"the PKCS#11 module does not support {exc.function}")
    return Unavailable(
        f"{exc.function} failed with CKR 0x{exc.rv:08x} while {action}{where}",
        hint="check that the module and its token are reachable",
        code="keystore.pkcs11",
    )
