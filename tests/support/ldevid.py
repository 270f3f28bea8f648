"""A short-lived LDevID recorded as EST would issue it, so a renewal falls due within seconds.

Test setup only, run in a child process (one SoftHSM2 configuration per process). BACKDATE
(5 min) makes every LDevID start in the past, so the issue time is chosen to put the renewal
point ``due_in_s`` from now while the certificate stays valid for a while after it. The same
recipe as tests/integration/agent/agentfleet.py.
"""

from __future__ import annotations

from pathlib import Path

from support.scripts import run_script

__all__ = ["shorten_ldevid"]

_SCRIPT = r"""
import json, sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from trustfleet.pki import BACKDATE, LDEVID, issue_device_certificate
from trustfleet.services._certs import record_certificate
from trustfleet.services.runtime import Runtime
from trustfleet.settings import load_server_settings

a = json.loads(sys.argv[1])
rt = Runtime.open(load_server_settings(Path(a["home"])))
path = Path(a["ldevid"])
old = x509.load_pem_x509_certificate(path.read_bytes())
real = datetime.now(UTC)
validity = timedelta(seconds=a["validity_s"])
lifetime = BACKDATE + validity
issue_at = real + timedelta(seconds=a["due_in_s"]) + BACKDATE - lifetime * a["fraction"]
cert = issue_device_certificate(
    issuer=rt.issuer("device"), public_key=old.public_key(), device_id=a["device_id"],
    profile=LDEVID, organization=rt.settings.pki.organization, now=issue_at, validity=validity)
with rt.uow.begin() as tx:
    record_certificate(tx, cert, issuer="device", kind="ldevid", device_id=a["device_id"],
                       now=real)
path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
print(format(cert.serial_number, "x"))
rt.close()
"""


def shorten_ldevid(
    home: Path, device: Path, *, due_in_s: float, fraction: float, validity_s: float = 60
) -> str:
    """Replace ``device/ldevid.pem`` by a recorded LDevID due for renewal in ``due_in_s``.

    Returns:
        The new certificate's serial (lowercase hex).
    """
    args = {
        "home": str(home),
        "ldevid": str(device / "ldevid.pem"),
        "device_id": device.name,
        "due_in_s": due_in_s,
        "fraction": fraction,
        "validity_s": validity_s,
    }
    return run_script(_SCRIPT, args).strip()
