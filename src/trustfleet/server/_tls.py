"""TLS 1.3 server contexts (pyOpenSSL on the OpenSSL that ships with ``cryptography``).

Why not the standard library's ``ssl``: it links the system OpenSSL (3.0 on Debian 12, about
twice the handshake cost of the OpenSSL bundled with ``cryptography``) and it aborts the
handshake on any client-certificate problem, so an expired or foreign certificate could never
get the reasoned HTTP 4xx that RFC 7030 asks for. See docs/adr/0001-tls-server-stack.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from OpenSSL import SSL, crypto

from trustfleet.errors import Config

__all__ = ["TlsServerConfig", "make_server_context"]

_SSL_MODE_NO_AUTO_CHAIN = 0x8  # SSL_MODE_NO_AUTO_CHAIN: send the chain file as is, no rebuild


@dataclass(frozen=True)
class TlsServerConfig:
    """Files of a TLS server.

    Attributes:
        cert_chain: PEM file with the server certificate followed by its intermediates.
        key: PEM file of the server key (mode 0600).
        client_ca: PEM file of the CAs whose certificates clients may present; ``None`` asks
            for no client certificate.
    """

    cert_chain: Path
    key: Path
    client_ca: Path | None = None


def _accept_any(
    _conn: SSL.Connection, _cert: crypto.X509, _errnum: int, _depth: int, _ok: int
) -> bool:
    # The handshake still proves possession of the client's key (CertificateVerify). Whether
    # the certificate is one we trust is decided by the application, which can then answer
    # with a reason instead of a bare TLS alert.
    return True


def make_server_context(config: TlsServerConfig) -> SSL.Context:
    """Build a TLS 1.3-only server context.

    Args:
        config: The certificate chain, key and optional client CA files.

    Returns:
        A pyOpenSSL context; client certificates are requested but optional.

    Raises:
        Config: A file is missing or does not hold what it should.
    """
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
    ctx.set_options(SSL.OP_NO_TICKET | SSL.OP_NO_COMPRESSION)
    ctx.set_mode(_SSL_MODE_NO_AUTO_CHAIN)
    try:
        ctx.use_certificate_chain_file(str(config.cert_chain))
        ctx.use_privatekey_file(str(config.key))
        ctx.check_privatekey()
        if config.client_ca is not None:
            ctx.load_verify_locations(str(config.client_ca))
            ctx.set_verify(SSL.VERIFY_PEER, _accept_any)
    except (SSL.Error, crypto.Error, OSError) as exc:
        raise Config(
            f"cannot load the TLS server files {config.cert_chain.name}/{config.key.name}",
            hint="check the [tls] paths in trustfleet.toml and the files' permissions",
        ) from exc
    return ctx
