"""TLS client contexts for awscrt whose private key stays in a PKCS#11 token.

The agent (EST and MQTT) and the fleet service (its MQTT identity) both connect this way; the
awscrt specifics live here once: SoftHSM2's configuration is read when awscrt initialises the
module, and TLS 1.3 comes from the PQ_DEFAULT policy because s2n refuses ``min_tls_ver`` =
TLSv1_3 on Linux (the service and the broker accept nothing older anyway).
"""

from __future__ import annotations

import os
from pathlib import Path

from awscrt import io as crt_io

from trustfleet.crt import map_crt_errors
from trustfleet.keystore._conflock import conf_lock

__all__ = ["token_tls_context"]


def token_tls_context(
    *,
    module: Path,
    conf: Path | None,
    token: str,
    key_label: str,
    pin: str,
    cert: Path,
    trust: Path,
) -> crt_io.ClientTlsContext:
    """An awscrt client TLS context presenting ``cert`` with the key ``key_label`` in ``token``.

    Args:
        module: The PKCS#11 module.
        conf: The SoftHSM2 configuration of the token (None for other modules).
        token: The token's label.
        key_label: The private key's label.
        pin: The token's user PIN (never logged).
        cert: The client certificate (PEM) of that key.
        trust: The only CAs the context trusts (PEM bundle).

    Returns:
        The context.

    Raises:
        Unavailable: awscrt could not load the module, log in or find the key.
    """
    if conf is not None:
        os.environ["SOFTHSM2_CONF"] = str(conf)
    with (
        map_crt_errors(
            f"use key '{key_label}' in token '{token}' for TLS",
            hint="check the key URI, the token PIN file and the certificate",
            code="keystore.tls_context",
        ),
        conf_lock(conf),  # awscrt logs in to the token (see keystore._runtime)
    ):
        return _build(
            module=module, token=token, key_label=key_label, pin=pin, cert=cert, trust=trust
        )


def _build(
    *, module: Path, token: str, key_label: str, pin: str, cert: Path, trust: Path
) -> crt_io.ClientTlsContext:
    lib = crt_io.Pkcs11Lib(file=str(module))
    opts = crt_io.TlsContextOptions.create_client_with_mtls_pkcs11(
        pkcs11_lib=lib,
        user_pin=pin,
        token_label=token,
        private_key_label=key_label,
        cert_file_path=str(cert),
    )
    opts.override_default_trust_store_from_path(None, str(trust))
    opts.cipher_pref = crt_io.TlsCipherPref.PQ_DEFAULT
    return crt_io.ClientTlsContext(opts)
