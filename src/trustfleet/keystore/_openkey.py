"""Keys opened by PKCS#11 URI, each in a logged-in session of its own."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from trustfleet.errors import InvalidInput
from trustfleet.keystore._eckey import Pkcs11EcPrivateKey
from trustfleet.keystore._edkey import Pkcs11Ed25519Key
from trustfleet.keystore._module import find_module
from trustfleet.keystore._token import TokenSession, open_token
from trustfleet.keystore._uri import Pkcs11Uri

__all__ = ["open_ed25519_key", "open_key"]

_Key = TypeVar("_Key", Pkcs11EcPrivateKey, Pkcs11Ed25519Key)


def open_key(
    uri: Pkcs11Uri | str, *, pin: str, module: Path | None = None, conf: Path | None = None
) -> Pkcs11EcPrivateKey:
    """Open the EC private key a PKCS#11 URI names, in a session of its own.

    Close the key (``key.close()`` or ``with``) to close that session.

    Args:
        uri: The key's URI; it must name the token.
        pin: The token's user PIN.
        module: The PKCS#11 module (default: the URI's ``module-path``, else a known SoftHSM2).
        conf: The SoftHSM2 configuration to make active (None keeps the active one).

    Returns:
        The key, owning its session.

    Raises:
        InvalidInput: The URI is malformed or names no token.
        NotFound: No such token or key.
        PermissionDenied: The PIN is wrong.
    """
    return _open_in_own_session(uri, pin=pin, module=module, conf=conf, find=_find_ec)


def open_ed25519_key(
    uri: Pkcs11Uri | str, *, pin: str, module: Path | None = None, conf: Path | None = None
) -> Pkcs11Ed25519Key:
    """Open the Ed25519 private key a PKCS#11 URI names, in a session of its own.

    Arguments, result and errors are those of :func:`open_key`; the key must be Ed25519.
    """
    return _open_in_own_session(uri, pin=pin, module=module, conf=conf, find=_find_ed25519)


def _find_ec(session: TokenSession, uri: Pkcs11Uri) -> Pkcs11EcPrivateKey:
    return session._key_from_uri(uri, owns_session=True)


def _find_ed25519(session: TokenSession, uri: Pkcs11Uri) -> Pkcs11Ed25519Key:
    return session._ed25519_key_from_uri(uri, owns_session=True)


def _open_in_own_session(
    uri: Pkcs11Uri | str,
    *,
    pin: str,
    module: Path | None,
    conf: Path | None,
    find: Callable[[TokenSession, Pkcs11Uri], _Key],
) -> _Key:
    parsed = Pkcs11Uri.parse(uri) if isinstance(uri, str) else uri
    if parsed.token is None:
        raise InvalidInput("the key URI must name the token ('token=…')")
    module_path = module if module is not None else find_module(parsed.module_path)
    session = open_token(module=module_path, label=parsed.token, pin=pin, conf=conf)
    try:
        return find(session, parsed)
    except BaseException:
        session.close()
        raise
