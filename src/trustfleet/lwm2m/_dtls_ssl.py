"""The one boundary between the DTLS server and OpenSSL (pyOpenSSL plus cryptography's bindings).

Contexts (certificate trust, CRL, cipher suites, the PSK and cookie callbacks) are built here,
and every OpenSSL error is translated here into a :class:`Step` value: nothing else in
``lwm2m`` catches ``SSL.Error``. The callbacks run inside OpenSSL; each catches everything at
its one place and refuses, since an exception must not cross into C.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, cast

from cryptography import x509
from cryptography.hazmat.bindings.openssl.binding import Binding
from cryptography.x509.oid import NameOID
from OpenSSL import SSL, crypto

from trustfleet.errors import Config
from trustfleet.lwm2m._dtls_records import CookieJar

__all__ = [
    "HandshakeNote",
    "SslFactory",
    "Step",
    "StepResult",
    "note_of",
    "peer_common_name",
    "run_step",
]

logger = logging.getLogger(__name__)

_BINDING = Binding()
_FFI: Any = _BINDING.ffi
_LIB: Any = _BINDING.lib
_MAX_PSK_IDENTITY_BYTES = 128  # RFC 4279: identities up to 2^16, LwM2M uses short ones
_CRL_BEGIN = b"-----BEGIN X509 CRL-----"
_X509_V_ERR_CERT_REVOKED = 23


@dataclass(slots=True)
class HandshakeNote:
    """What the callbacks learn about one connection (its pyOpenSSL app data)."""

    address: tuple[str, int]
    psk_identity: str | None = None
    psk_found: bool = False
    verify_errors: list[int] = field(default_factory=list)

    @property
    def revoked(self) -> bool:
        return _X509_V_ERR_CERT_REVOKED in self.verify_errors


class Step(Enum):
    """The outcome of one OpenSSL call on a connection."""

    DONE = "done"
    WANT_READ = "want_read"
    CLOSED = "closed"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class StepResult:
    step: Step
    value: Any = None
    detail: str = ""


def run_step(call: Callable[[], Any]) -> StepResult:
    """Run one pyOpenSSL call, translating its errors (the only place that catches them)."""
    try:
        return StepResult(Step.DONE, call())
    except SSL.WantReadError:
        return StepResult(Step.WANT_READ)
    except SSL.ZeroReturnError:
        return StepResult(Step.CLOSED)
    except (SSL.Error, SSL.SysCallError) as exc:
        return StepResult(Step.FAILED, detail=_describe(exc))


def _describe(exc: Exception) -> str:
    args = exc.args[0] if exc.args else ""
    if isinstance(args, list) and args and isinstance(args[0], tuple):
        return "; ".join(str(part[-1]) for part in args)[:200]
    return str(exc)[:200]


def _cipher_string(ciphers: tuple[str, ...]) -> str:
    text = ":".join(ciphers)
    # OpenSSL 3+/4 puts 64-bit-tag CCM8 suites below security level 1.
    return text + ":@SECLEVEL=0" if any("CCM8" in name for name in ciphers) else text


def _load_crls(crl_file: Path) -> list[x509.CertificateRevocationList]:
    data = crl_file.read_bytes()
    blocks = [_CRL_BEGIN + part for part in data.split(_CRL_BEGIN)[1:]]
    return [x509.load_pem_x509_crl(block) for block in blocks]


def note_of(conn: SSL.Connection) -> HandshakeNote:
    """The note :meth:`SslFactory.connection` attached to ``conn``."""
    return cast(HandshakeNote, conn.get_app_data())


def peer_common_name(connection: SSL.Connection) -> str | None:
    """The subject CN of the peer's verified certificate, if any."""
    cert = connection.get_peer_certificate(as_cryptography=True)
    if cert is None:
        return None
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if names else None
    return value if isinstance(value, str) else None


class SslFactory:
    """Builds server contexts and per-peer connections; holds the C callbacks alive."""

    def __init__(
        self,
        *,
        modes: tuple[str, ...],
        ciphers: tuple[str, ...],
        cert_chain: Path | None,
        key_file: Path | None,
        ca_file: Path | None,
        ca_path: Path | None,
        crl_file: Path | None,
        cookies: CookieJar,
        psk_lookup: Callable[[str], bytes | None],
        mtu_bytes: int,
    ) -> None:
        self._modes = modes
        self._ciphers = ciphers
        self._cert_chain, self._key_file = cert_chain, key_file
        self._ca_file, self._ca_path, self._crl_file = ca_file, ca_path, crl_file
        self._cookies = cookies
        self._psk_lookup = psk_lookup
        self._mtu_bytes = mtu_bytes
        self._psk_callback = _FFI.callback(
            "unsigned int (*)(SSL *, const char *, unsigned char *, unsigned int)",
            self._on_psk,
        )

    def build(self) -> SSL.Context:
        """A new context from the current files (trust, CRL).

        Raises:
            Config: A file is missing or unreadable, or no cipher suite is usable.
        """
        try:
            return self._build()
        except (SSL.Error, OSError, ValueError) as exc:
            raise Config(
                f"the DTLS server cannot be set up: {_describe(exc)}",
                hint="Check [lwm2m] tls_cert, tls_key and ciphers, and the device trust files.",
                code="lwm2m.dtls.config",
            ) from exc

    def _build(self) -> SSL.Context:
        ctx = SSL.Context(SSL.DTLS_SERVER_METHOD)
        ctx.set_options(SSL.OP_NO_QUERY_MTU | SSL.OP_NO_TICKET)
        ctx.set_cipher_list(_cipher_string(self._ciphers).encode())
        ctx.set_cookie_generate_callback(self._cookie_generate)
        ctx.set_cookie_verify_callback(self._cookie_verify)
        if "psk" in self._modes:
            _LIB.SSL_CTX_set_psk_server_callback(ctx._context, self._psk_callback)
        if "cert" in self._modes and self._cert_chain is not None and self._key_file is not None:
            ctx.use_certificate_chain_file(str(self._cert_chain))
            ctx.use_privatekey_file(str(self._key_file))
            ctx.check_privatekey()
            if self._ca_file is not None or self._ca_path is not None:
                ctx.load_verify_locations(
                    str(self._ca_file) if self._ca_file else None,
                    str(self._ca_path) if self._ca_path else None,
                )
            if self._crl_file is not None and self._crl_file.exists():
                store = ctx.get_cert_store()
                if store is None:  # a fresh context always has one
                    raise ValueError("no certificate store")
                for crl in _load_crls(self._crl_file):
                    store.add_crl(crl)
                store.set_flags(crypto.X509StoreFlags.CRL_CHECK)
            ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, self._on_verify)
        return ctx

    def connection(self, ctx: SSL.Context, address: tuple[str, int]) -> SSL.Connection:
        """A server-side connection over memory BIOs for ``address``."""
        conn = SSL.Connection(ctx, None)
        conn.set_app_data(HandshakeNote(address=address))
        conn.set_accept_state()
        conn.set_ciphertext_mtu(self._mtu_bytes)
        return conn

    @staticmethod
    def _note(conn: SSL.Connection) -> HandshakeNote:
        return note_of(conn)

    def _cookie_generate(self, conn: SSL.Connection) -> bytes:
        return self._cookies.generate(self._note(conn).address)

    def _cookie_verify(self, conn: SSL.Connection, cookie: bytes) -> bool:
        return self._cookies.verify(self._note(conn).address, cookie)

    @staticmethod
    def _on_verify(
        conn: SSL.Connection, cert: crypto.X509, errnum: int, depth: int, ok: int
    ) -> bool:
        if not ok:
            SslFactory._note(conn).verify_errors.append(errnum)
        return bool(ok)

    def _on_psk(self, ssl: Any, c_identity: Any, psk: Any, max_psk_len: int) -> int:
        # Runs inside OpenSSL: everything is caught here and the handshake refused (0).
        try:
            conn = SSL.Connection._reverse_mapping[ssl]
            raw = _FFI.string(c_identity, _MAX_PSK_IDENTITY_BYTES + 1)
            if len(raw) > _MAX_PSK_IDENTITY_BYTES:
                return 0
            identity = raw.decode("utf-8")
            self._note(conn).psk_identity = identity
            key = self._psk_lookup(identity)
            if key is None or not 0 < len(key) <= max_psk_len:
                return 0
            self._note(conn).psk_found = True
            _FFI.memmove(psk, key, len(key))
            return len(key)
        except Exception:
            logger.exception("PSK lookup failed; handshake refused")
            return 0
