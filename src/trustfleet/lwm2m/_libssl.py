"""The few libssl 3 / libcrypto 3 calls the DTLS client needs, through ctypes.

The system OpenSSL (Debian's ``libssl.so.3``) is used instead of pyOpenSSL's bundled copy because
only the system one can load the pkcs11 ENGINE of libengine-pkcs11-openssl, which signs the
handshake with the identity key inside the device's SoftHSM2 token. Every failing call is turned
into a :class:`LibsslError` carrying the drained ``ERR_get_error`` strings; ``dtls_client.py``
translates those into TrustFleet errors at one boundary.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

__all__ = [
    "DTLS_CTRL_GET_TIMEOUT",
    "DTLS_CTRL_HANDLE_TIMEOUT",
    "SSL_ERROR_WANT_READ",
    "SSL_ERROR_ZERO_RETURN",
    "Libs",
    "LibsslError",
    "PskClientCallback",
    "TimeVal",
    "drain_errors",
    "libs",
]

DTLS_CTRL_GET_TIMEOUT = 73
DTLS_CTRL_HANDLE_TIMEOUT = 74
SSL_CTRL_SET_MTU = 17
BIO_CTRL_PENDING = 10
BIO_C_SET_BUF_MEM_EOF_RETURN = 130
SSL_OP_NO_QUERY_MTU = 0x1000
SSL_VERIFY_PEER = 0x01
SSL_ERROR_SSL = 1
SSL_ERROR_WANT_READ = 2
SSL_ERROR_WANT_WRITE = 3
SSL_ERROR_SYSCALL = 5
SSL_ERROR_ZERO_RETURN = 6
X509_V_OK = 0
MAX_ERRORS = 16

PskClientCallback = ctypes.CFUNCTYPE(
    ctypes.c_uint,
    ctypes.c_void_p,  # SSL *
    ctypes.c_char_p,  # identity hint
    ctypes.c_void_p,  # char *identity (out)
    ctypes.c_uint,  # max_identity_len
    ctypes.c_void_p,  # unsigned char *psk (out)
    ctypes.c_uint,  # max_psk_len
)
"""``SSL_psk_client_cb_func``: returns the PSK length, 0 to fail the handshake."""


class TimeVal(ctypes.Structure):
    """``struct timeval`` as DTLSv1_get_timeout fills it."""

    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class LibsslError(Exception):
    """A libssl call failed; ``reasons`` are the OpenSSL error strings (never key material)."""

    def __init__(self, action: str, reasons: tuple[str, ...]) -> None:
        super().__init__(f"{action}: {'; '.join(reasons) or 'no OpenSSL error recorded'}")
        self.action = action
        self.reasons = reasons


_P = ctypes.c_void_p
_SIGNATURES: dict[str, tuple[object, tuple[object, ...]]] = {
    "DTLS_client_method": (_P, ()),
    "SSL_CTX_new": (_P, (_P,)),
    "SSL_CTX_free": (None, (_P,)),
    "SSL_CTX_set_cipher_list": (ctypes.c_int, (_P, ctypes.c_char_p)),
    "SSL_CTX_set_options": (ctypes.c_uint64, (_P, ctypes.c_uint64)),
    "SSL_CTX_set_psk_client_callback": (None, (_P, PskClientCallback)),
    "SSL_CTX_use_certificate_chain_file": (ctypes.c_int, (_P, ctypes.c_char_p)),
    "SSL_CTX_use_PrivateKey": (ctypes.c_int, (_P, _P)),
    "SSL_CTX_check_private_key": (ctypes.c_int, (_P,)),
    "SSL_CTX_load_verify_locations": (ctypes.c_int, (_P, ctypes.c_char_p, ctypes.c_char_p)),
    "SSL_CTX_set_verify": (None, (_P, ctypes.c_int, _P)),
    "SSL_new": (_P, (_P,)),
    "SSL_free": (None, (_P,)),
    "SSL_set_bio": (None, (_P, _P, _P)),
    "SSL_get_rbio": (_P, (_P,)),
    "SSL_get_wbio": (_P, (_P,)),
    "SSL_set_connect_state": (None, (_P,)),
    "SSL_do_handshake": (ctypes.c_int, (_P,)),
    "SSL_get_error": (ctypes.c_int, (_P, ctypes.c_int)),
    "SSL_read": (ctypes.c_int, (_P, ctypes.c_void_p, ctypes.c_int)),
    "SSL_write": (ctypes.c_int, (_P, ctypes.c_char_p, ctypes.c_int)),
    "SSL_shutdown": (ctypes.c_int, (_P,)),
    "SSL_ctrl": (ctypes.c_long, (_P, ctypes.c_int, ctypes.c_long, _P)),
    "SSL_get_verify_result": (ctypes.c_long, (_P,)),
    "SSL_get_current_cipher": (_P, (_P,)),
    "SSL_CIPHER_get_name": (ctypes.c_char_p, (_P,)),
    "BIO_s_mem": (_P, ()),
}
_CRYPTO_SIGNATURES: dict[str, tuple[object, tuple[object, ...]]] = {
    "BIO_new": (_P, (_P,)),
    "BIO_free": (ctypes.c_int, (_P,)),
    "BIO_write": (ctypes.c_int, (_P, ctypes.c_char_p, ctypes.c_int)),
    "BIO_read": (ctypes.c_int, (_P, ctypes.c_void_p, ctypes.c_int)),
    "BIO_ctrl": (ctypes.c_long, (_P, ctypes.c_int, ctypes.c_long, _P)),
    "ERR_get_error": (ctypes.c_ulong, ()),
    "ERR_error_string_n": (None, (ctypes.c_ulong, ctypes.c_char_p, ctypes.c_size_t)),
    "ERR_clear_error": (None, ()),
    "ENGINE_by_id": (_P, (ctypes.c_char_p,)),
    "ENGINE_ctrl_cmd_string": (ctypes.c_int, (_P, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int)),
    "ENGINE_init": (ctypes.c_int, (_P,)),
    "ENGINE_finish": (ctypes.c_int, (_P,)),
    "ENGINE_free": (ctypes.c_int, (_P,)),
    "ENGINE_load_private_key": (_P, (_P, ctypes.c_char_p, _P, _P)),
    "EVP_PKEY_free": (None, (_P,)),
    "X509_verify_cert_error_string": (ctypes.c_char_p, (ctypes.c_long,)),
}


@dataclass(frozen=True, slots=True)
class Libs:
    """The loaded libraries with their prototypes set."""

    ssl: ctypes.CDLL
    crypto: ctypes.CDLL

    def fn(self, name: str) -> Callable[..., object]:
        """The libssl or libcrypto function ``name`` (prototype set by :func:`libs`)."""
        library = self.ssl if name in _SIGNATURES else self.crypto
        return getattr(library, name)  # type: ignore[no-any-return]  # ctypes attributes are Any


def _load(candidates: tuple[str, ...]) -> ctypes.CDLL:
    last: OSError | None = None
    for name in candidates:
        try:
            return ctypes.CDLL(name)
        except OSError as exc:
            last = exc
    raise LibsslError(f"loading {candidates[0]}", (str(last),))


def _prototype(library: ctypes.CDLL, table: dict[str, tuple[object, tuple[object, ...]]]) -> None:
    for name, (restype, argtypes) in table.items():
        function = getattr(library, name)
        function.restype = restype
        function.argtypes = argtypes


@cache
def libs() -> Libs:
    """Load the system libssl 3 and libcrypto 3 once per process.

    Raises:
        LibsslError: The libraries are missing or not version 3.
    """
    ssl = _load(("libssl.so.3", ctypes.util.find_library("ssl") or "libssl.so"))
    crypto = _load(("libcrypto.so.3", ctypes.util.find_library("crypto") or "libcrypto.so"))
    try:
        _prototype(ssl, _SIGNATURES)
        _prototype(crypto, _CRYPTO_SIGNATURES)
    except AttributeError as exc:
        raise LibsslError("binding libssl 3", (str(exc),)) from exc
    return Libs(ssl=ssl, crypto=crypto)


def drain_errors(lib: Libs) -> tuple[str, ...]:
    """Empty this thread's OpenSSL error queue into readable strings (at most 16)."""
    reasons: list[str] = []
    get_error = lib.fn("ERR_get_error")
    to_string = lib.fn("ERR_error_string_n")
    for _ in range(MAX_ERRORS):
        code = get_error()
        if not code:
            break
        buffer = ctypes.create_string_buffer(256)
        to_string(code, buffer, len(buffer))
        reasons.append(buffer.value.decode("ascii", "replace"))
    lib.fn("ERR_clear_error")()
    return tuple(reasons)
