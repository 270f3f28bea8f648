"""One DTLS 1.2 client connection over memory BIOs: the synchronous libssl half of DtlsClient.

No I/O here: datagrams from the socket go in through :meth:`SslConnection.feed`, datagrams to
send come out of :meth:`SslConnection.outgoing` (the write BIO's bytes split at DTLS record
boundaries and packed into datagrams of at most ``mtu_bytes``, because a memory BIO is a byte
stream that forgets where one datagram ended).
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trustfleet.lwm2m._dtls_records import pack_records
from trustfleet.lwm2m._libssl import (
    BIO_C_SET_BUF_MEM_EOF_RETURN,
    BIO_CTRL_PENDING,
    DTLS_CTRL_GET_TIMEOUT,
    DTLS_CTRL_HANDLE_TIMEOUT,
    SSL_CTRL_SET_MTU,
    SSL_OP_NO_QUERY_MTU,
    SSL_VERIFY_PEER,
    X509_V_OK,
    Libs,
    LibsslError,
    PskClientCallback,
    TimeVal,
    drain_errors,
    libs,
)

__all__ = ["Credentials", "SslConnection"]

MAX_PSK_BYTES = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class Credentials:
    """What the client proves itself with (PSK or token key + certificate) and whom it trusts."""

    ciphers: str
    psk_identity: str | None = None
    psk_key: bytes | None = None
    certificate: Path | None = None
    key_uri: str | None = None
    pin: str | None = None
    module: Path | None = None
    softhsm_conf: Path | None = None
    ca_file: Path | None = None

    def __repr__(self) -> str:
        return f"Credentials(psk_identity={self.psk_identity!r}, certificate={self.certificate})"


class SslConnection:
    """An SSL_CTX + SSL pair in client mode with memory BIOs; free it with :meth:`free`."""

    def __init__(self, credentials: Credentials, *, mtu_bytes: int) -> None:
        self._lib: Libs = libs()
        self._mtu_bytes = mtu_bytes
        self._ctx: int | None = None
        self._ssl: int | None = None
        self._engine: int | None = None
        self._engine_ready = False
        self._pkey: int | None = None
        self._callback: object = None  # keeps the ctypes PSK callback alive as long as the SSL_CTX
        self._lib.fn("ERR_clear_error")()
        try:
            self._ctx = self._check_ptr(
                self._lib.fn("SSL_CTX_new")(self._lib.fn("DTLS_client_method")()), "SSL_CTX_new"
            )
            self._configure(credentials)
            self._ssl = self._check_ptr(self._lib.fn("SSL_new")(self._ctx), "SSL_new")
            self._attach_bios()
        except LibsslError:
            self.free()
            raise

    def _fn(self, name: str, *args: object) -> int:
        result: Any = self._lib.fn(name)(*args)  # ctypes returns plain ints (or None) here
        return int(result) if result is not None else 0

    def _check_ptr(self, value: object, action: str) -> int:
        if not value:
            raise LibsslError(action, drain_errors(self._lib))
        pointer: Any = value  # a ctypes c_void_p result is a plain int
        return int(pointer)

    def _check(self, value: int, action: str) -> None:
        if value != 1:
            raise LibsslError(action, drain_errors(self._lib))

    def _configure(self, credentials: Credentials) -> None:
        self._check(
            self._fn("SSL_CTX_set_cipher_list", self._ctx, credentials.ciphers.encode()),
            "setting the cipher list",
        )
        self._fn("SSL_CTX_set_options", self._ctx, SSL_OP_NO_QUERY_MTU)
        if credentials.psk_key is not None:
            self._use_psk(credentials.psk_identity or "", credentials.psk_key)
        if credentials.certificate is not None:
            self._use_token_key(credentials)
        if credentials.ca_file is not None:
            path = str(credentials.ca_file).encode()
            self._check(
                self._fn("SSL_CTX_load_verify_locations", self._ctx, path, None),
                "loading the server CA file",
            )
            self._fn("SSL_CTX_set_verify", self._ctx, SSL_VERIFY_PEER, None)

    def _use_psk(self, identity: str, key: bytes) -> None:
        raw_identity = identity.encode("utf-8")

        def _callback(
            _ssl: int, _hint: bytes | None, out_id: int, max_id: int, out_psk: int, max_psk: int
        ) -> int:
            if len(raw_identity) + 1 > max_id or len(key) > max_psk:
                return 0
            ctypes.memmove(out_id, raw_identity + b"\0", len(raw_identity) + 1)
            ctypes.memmove(out_psk, key, len(key))
            return len(key)

        self._callback = PskClientCallback(_callback)
        self._lib.fn("SSL_CTX_set_psk_client_callback")(self._ctx, self._callback)

    def _use_token_key(self, credentials: Credentials) -> None:
        if credentials.softhsm_conf is not None:
            os.environ["SOFTHSM2_CONF"] = str(credentials.softhsm_conf)
        engine = self._check_ptr(self._fn("ENGINE_by_id", b"pkcs11"), "loading the pkcs11 engine")
        self._engine = engine
        if credentials.module is not None:
            self._check(
                self._fn(
                    "ENGINE_ctrl_cmd_string",
                    engine,
                    b"MODULE_PATH",
                    str(credentials.module).encode(),
                    0,
                ),
                "setting the PKCS#11 module",
            )
        if self._fn("ENGINE_init", engine) != 1:
            raise LibsslError("initialising the pkcs11 engine", drain_errors(self._lib))
        self._engine_ready = True
        if credentials.pin is not None:
            self._check(
                self._fn("ENGINE_ctrl_cmd_string", engine, b"PIN", credentials.pin.encode(), 0),
                "giving the token PIN",
            )
        uri = (credentials.key_uri or "").encode()
        self._pkey = self._check_ptr(
            self._fn("ENGINE_load_private_key", engine, uri, None, None),
            "loading the identity key from the token",
        )
        self._check(
            self._fn(
                "SSL_CTX_use_certificate_chain_file",
                self._ctx,
                str(credentials.certificate).encode(),
            ),
            "loading the device certificate",
        )
        self._check(
            self._fn("SSL_CTX_use_PrivateKey", self._ctx, self._pkey), "using the token key"
        )
        self._check(
            self._fn("SSL_CTX_check_private_key", self._ctx), "matching key and certificate"
        )

    def _attach_bios(self) -> None:
        method = self._fn("BIO_s_mem")
        rbio = self._check_ptr(self._fn("BIO_new", method), "BIO_new")
        wbio = self._fn("BIO_new", method)
        if not wbio:
            self._fn("BIO_free", rbio)
            raise LibsslError("BIO_new", drain_errors(self._lib))
        self._fn("BIO_ctrl", rbio, BIO_C_SET_BUF_MEM_EOF_RETURN, -1, None)
        self._fn("BIO_ctrl", wbio, BIO_C_SET_BUF_MEM_EOF_RETURN, -1, None)
        self._fn("SSL_set_bio", self._ssl, rbio, wbio)  # the SSL owns both BIOs from here
        self._fn("SSL_ctrl", self._ssl, SSL_CTRL_SET_MTU, self._mtu_bytes - 28, None)
        self._fn("SSL_set_connect_state", self._ssl)

    # -- the state machine -------------------------------------------------------------------

    def handshake(self) -> tuple[int, int]:
        """One ``SSL_do_handshake`` step: (return value, SSL_get_error code)."""
        self._lib.fn("ERR_clear_error")()
        result = self._fn("SSL_do_handshake", self._ssl)
        return result, (0 if result == 1 else self._fn("SSL_get_error", self._ssl, result))

    def feed(self, datagram: bytes) -> None:
        """Hand one received datagram to the read BIO."""
        self._fn("BIO_write", self._fn("SSL_get_rbio", self._ssl), datagram, len(datagram))

    def outgoing(self) -> list[bytes]:
        """The datagrams libssl wants sent, packed at record boundaries."""
        wbio = self._fn("SSL_get_wbio", self._ssl)
        pending = self._fn("BIO_ctrl", wbio, BIO_CTRL_PENDING, 0, None)
        if pending <= 0:
            return []
        buffer = ctypes.create_string_buffer(pending)
        count = self._fn("BIO_read", wbio, buffer, pending)
        return pack_records(buffer.raw[: max(count, 0)], max_datagram_bytes=self._mtu_bytes)

    def read(self, max_bytes: int) -> tuple[bytes | None, int]:
        """One ``SSL_read``: (plaintext or None, SSL_get_error code when None)."""
        self._lib.fn("ERR_clear_error")()
        buffer = ctypes.create_string_buffer(max_bytes)
        count = self._fn("SSL_read", self._ssl, buffer, max_bytes)
        if count > 0:
            return buffer.raw[:count], 0
        return None, self._fn("SSL_get_error", self._ssl, count)

    def write(self, data: bytes) -> None:
        """Encrypt one application record into the write BIO."""
        self._lib.fn("ERR_clear_error")()
        if self._fn("SSL_write", self._ssl, data, len(data)) != len(data):
            raise LibsslError("SSL_write", drain_errors(self._lib))

    def timeout_s(self) -> float | None:
        """Seconds until the DTLS retransmission timer fires (None: no timer running)."""
        value = TimeVal()
        if self._fn("SSL_ctrl", self._ssl, DTLS_CTRL_GET_TIMEOUT, 0, ctypes.byref(value)) != 1:
            return None
        return float(value.tv_sec) + float(value.tv_usec) / 1_000_000

    def handle_timeout(self) -> None:
        """Let libssl retransmit its last flight if the timer expired."""
        self._fn("SSL_ctrl", self._ssl, DTLS_CTRL_HANDLE_TIMEOUT, 0, None)

    def shutdown(self) -> None:
        """Queue a close_notify alert."""
        self._fn("SSL_shutdown", self._ssl)

    def verify_error(self) -> str | None:
        """Why the server certificate failed verification, or None if it did not fail."""
        code = self._fn("SSL_get_verify_result", self._ssl)
        if code == X509_V_OK:
            return None
        text = self._lib.fn("X509_verify_cert_error_string")(code)
        return text.decode("ascii", "replace") if isinstance(text, bytes) else str(code)

    def cipher(self) -> str:
        """The negotiated cipher suite's OpenSSL name."""
        cipher = self._fn("SSL_get_current_cipher", self._ssl)
        name = self._lib.fn("SSL_CIPHER_get_name")(cipher) if cipher else None
        return name.decode("ascii") if isinstance(name, bytes) else ""

    def errors(self) -> tuple[str, ...]:
        """The drained OpenSSL error strings."""
        return drain_errors(self._lib)

    def free(self) -> None:
        """Free the SSL, the SSL_CTX and the engine objects (idempotent)."""
        if self._ssl is not None:
            self._fn("SSL_free", self._ssl)
            self._ssl = None
        if self._ctx is not None:
            self._fn("SSL_CTX_free", self._ctx)
            self._ctx = None
        if self._pkey is not None:
            self._fn("EVP_PKEY_free", self._pkey)
            self._pkey = None
        if self._engine is not None:
            if self._engine_ready:
                self._fn("ENGINE_finish", self._engine)
            self._fn("ENGINE_free", self._engine)
            self._engine = None
