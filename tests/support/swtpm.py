"""Manufactured software TPMs for the suites that run swtpm: manufacture once, copy per test.

Manufacturing a TPM (``swtpm_setup``: EKs and their certificates) takes about a second, so a
session manufactures each TPM it needs once, with the root conftest's ``vendor_ca``, and every
test starts its own swtpm on a copy of that state. Copies of one state are clones of one TPM
(same EK); a test that needs another TPM manufactures another.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from trustfleet.keystore.tpm import ManufacturerCa, SwtpmInstance

__all__ = ["STATE_FILE", "clone_state", "manufacture"]

STATE_FILE = "tpm2-00.permall"
"""The file swtpm keeps a TPM's NVRAM in: the whole state of a powered-off TPM."""


def manufacture(folder: Path, ca: ManufacturerCa) -> Path:
    """Manufacture a TPM in ``folder`` (never started: copy it with :func:`clone_state`)."""
    SwtpmInstance(folder, ca=ca).setup()
    assert (folder / STATE_FILE).is_file()
    return folder


def clone_state(manufactured: Path, target: Path) -> Path:
    """Copy a manufactured TPM's state (its NVRAM file) into the new folder ``target``."""
    target.mkdir(parents=True, mode=0o700)
    shutil.copy2(manufactured / STATE_FILE, target / STATE_FILE)
    return target
