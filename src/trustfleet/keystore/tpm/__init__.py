"""TPM 2.0 on the device: swtpm per simulated device, and the ``Tpm`` adapter (tpm2-pytss).

Typical use::

    ca = ManufacturerCa(home / "tpm-vendor-ca")        # the simulated TPM vendor
    with SwtpmInstance(device_dir / "tpm", ca=ca) as swtpm, Tpm(tcti=swtpm.tcti) as tpm:
        ak = tpm.create_ak()
        attest, signature = tpm.quote(nonce, [0, 4, 9, 10])
        blob = tpm.seal(data_key, pcr_values=expected_pcrs(next_boot_events))

``Tpm`` loads tpm2-pytss (about 18 MB of resident memory) on first use
(PEP 562); ``SwtpmInstance`` and the PCR arithmetic do not need it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trustfleet.keystore._lazy import lazy_attributes
from trustfleet.keystore.tpm._policy import expected_pcrs, extend, pcr_policy_digest
from trustfleet.keystore.tpm._swtpm import SwtpmInstance
from trustfleet.keystore.tpm._types import DEFAULT_AK_HANDLE, AkInfo, EkType, TpmClock
from trustfleet.keystore.tpm._vendor import ManufacturerCa

if TYPE_CHECKING:
    from trustfleet.keystore.tpm._tpm import Tpm

_LAZY = {"Tpm": "trustfleet.keystore.tpm._tpm"}


__getattr__ = lazy_attributes(__name__, globals(), _LAZY)


__all__ = [
    "DEFAULT_AK_HANDLE",
    "AkInfo",
    "EkType",
    "ManufacturerCa",
    "SwtpmInstance",
    "Tpm",
    "TpmClock",
    "expected_pcrs",
    "extend",
    "pcr_policy_digest",
]
