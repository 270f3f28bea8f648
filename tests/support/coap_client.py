"""Debian's ``coap-client-openssl`` (libcoap 4.3) as an independent CoAP-over-DTLS peer.

Certificate mode with the device key in a PKCS#11 token (SoftHSM2): libcoap's OpenSSL backend
loads ``pkcs11:`` URIs through the OpenSSL ``pkcs11`` engine (libengine-pkcs11-openssl). The
command line that works (checked against ``openssl s_server -dtls1_2 -Verify 2``, which then
shows the client's subject)::

    SOFTHSM2_CONF=... coap-client-openssl -B 5 -m get -c ldevid.der \\
        -j 'pkcs11:token=TOKEN;object=LABEL;type=private' -J PIN -R server-ca.pem \\
        coaps://127.0.0.1:PORT/rd

``-c`` is DER (not PEM) once any of ``-c``/``-j``/``-C`` is a ``pkcs11:`` URI; ``-J`` is the
token's user PIN; ``-R`` the trust for the server's chain (PEM).

``-c`` may also be the certificate's URI in the token (``...;type=cert``). ``-R`` with a DER file
fails ("Unable to install root CAs"); it takes PEM. The exit status is 0 even when no response
came (``-B`` ends the wait), so :class:`CoapResult` is judged by its output: the payload in the
``-o`` file, the PDUs (``v:1 t:ACK c:2.05 ...``) and the DTLS alerts at ``-v 6`` on stdout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "COAP_CLIENT",
    "CoapClientUnavailable",
    "CoapResult",
    "coap_request",
]

COAP_CLIENT = "coap-client-openssl"
WAIT_S = 5
"""How long the client waits for a response (``-B``)."""
RUN_TIMEOUT_S = 30.0
"""Bound on one run (a hung client is killed)."""


class CoapClientUnavailable(Exception):
    """``coap-client-openssl`` is not installed (the tests skip with this reason)."""


@dataclass(frozen=True, slots=True)
class CoapResult:
    """What one ``coap-client-openssl`` run printed.

    Attributes:
        returncode: Its exit status (0 also when nothing came back).
        payload: The response payload (written with ``-o``).
        log: Its output at ``-v 6`` (stdout and stderr): handshake steps, alerts, the PDUs.
    """

    returncode: int
    payload: bytes
    log: str

    @property
    def handshake_failed(self) -> bool:
        """Whether the DTLS handshake was refused or broke off (an alert, no session)."""
        text = self.log.lower()
        return ("alert" in text and "fatal" in text) or "handshake failure" in text

    def response_code(self) -> str | None:
        """The response code libcoap logged (e.g. ``2.05``), None if no response came."""
        for line in self.log.splitlines():
            # libcoap logs a received PDU as "v:1 t:ACK c:2.05 i:... {token} [ ... ]"
            if " c:" in line and (" t:ACK" in line or " t:CON" in line or " t:NON" in line):
                code = line.split(" c:", 1)[1].split()[0]
                if code[:1] in "2345" and "." in code:
                    return code
        return None


def coap_request(
    uri: str,
    *,
    method: str = "get",
    certificate: Path,
    key_uri: str,
    pin: str,
    server_ca: Path,
    softhsm_conf: Path,
    payload: bytes | None = None,
    content_format: int | None = None,
    wait_s: int = WAIT_S,
) -> CoapResult:
    """One CoAP request over DTLS in certificate mode, the key in a SoftHSM2 token.

    Args:
        uri: ``coaps://HOST:PORT/path?query``.
        method: get, put, post, delete, fetch, ...
        certificate: The client's certificate, DER.
        key_uri: RFC 7512 URI of its private key (no PIN inside).
        pin: The token's user PIN.
        server_ca: PEM file of the CA(s) the server's chain ends at.
        softhsm_conf: The SoftHSM2 configuration naming the token folder.
        payload: The request body (``-e``), if any.
        content_format: Its content format (``-t``).
        wait_s: How long to wait for the response.

    Raises:
        CoapClientUnavailable: The client is not installed.
    """
    binary = shutil.which(COAP_CLIENT)
    if binary is None:
        raise CoapClientUnavailable(f"{COAP_CLIENT} not installed (Debian libcoap3-bin)")
    argv = [
        binary, "-v", "6", "-B", str(wait_s), "-m", method,
        "-c", str(certificate), "-j", key_uri, "-J", pin, "-R", str(server_ca),
    ]  # fmt: skip
    if content_format is not None:
        argv += ["-t", str(content_format)]
    if payload is not None:
        argv += ["-e", payload.decode("latin-1")]
    env = {**os.environ, "SOFTHSM2_CONF": str(softhsm_conf)}
    with tempfile.TemporaryDirectory(prefix="coap-client.") as scratch:
        out = Path(scratch) / "payload"
        argv += ["-o", str(out), uri]
        done = subprocess.run(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            timeout=RUN_TIMEOUT_S, check=False, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        body = out.read_bytes() if out.is_file() else b""
    return CoapResult(
        returncode=done.returncode, payload=body, log=done.stdout.decode(errors="replace")
    )
