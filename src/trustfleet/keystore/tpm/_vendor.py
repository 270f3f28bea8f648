"""The simulated TPM manufacturer: the CA that signs each swtpm's EK certificate.

``swtpm_localca`` signs each device's EK certificate with a CA whose key is a plain file in a
folder we choose (:class:`ManufacturerCa`). That CA stands for the TPM vendor (Infineon,
STMicro, Nuvoton, …), whose CA certificates an operator configures as trusted for EK
certificates. It is **not** a TrustFleet key and never signs anything of TrustFleet's; the
system-wide ``/etc/swtpm*`` configuration and ``/var/lib/swtpm-localca`` are never used.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from trustfleet.errors import InvalidInput, NotFound
from trustfleet.fileio import (
    FILE_MODE,
    PRIVATE_DIR_MODE,
    PRIVATE_FILE_MODE,
    make_dirs,
    write_atomic,
)

__all__ = ["ManufacturerCa"]


@dataclass(frozen=True)
class ManufacturerCa:
    """The simulated TPM vendor's CA: configuration and key files in ``folder``.

    ``swtpm_localca`` creates a root CA and an issuing CA (key files, mode 0640) in the folder
    the first time a TPM is manufactured; :meth:`protect` makes the folder 0700 and the keys
    0600. In production these keys belong to the TPM vendor.

    Attributes:
        folder: Where the configuration, the CA keys and the CA certificates live.
        platform_manufacturer: The platform certificate's manufacturer field.
        platform_model: The platform certificate's model field.
    """

    folder: Path
    platform_manufacturer: str = "TrustFleet-Sim"
    platform_model: str = "sim"

    @property
    def setup_conf(self) -> Path:
        """The ``swtpm_setup.conf`` passed to ``swtpm_setup --config``."""
        return self.folder / "swtpm_setup.conf"

    @property
    def root_certificate(self) -> Path:
        """The vendor root CA certificate (PEM), once the first TPM was manufactured."""
        return self.folder / "swtpm-localca-rootca-cert.pem"

    @property
    def issuer_certificate(self) -> Path:
        """The vendor issuing CA certificate (PEM) that signs EK certificates."""
        return self.folder / "issuercert.pem"

    def prepare(self) -> None:
        """Write the three configuration files (idempotent; the CA keys come later).

        Raises:
            InvalidInput: A field contains a newline or the folder path is not absolute.
        """
        folder = self.folder
        for value in (str(folder), self.platform_manufacturer, self.platform_model):
            if "\n" in value or not value:
                raise InvalidInput("manufacturer CA fields must be one non-empty line")
        if not folder.is_absolute():
            raise InvalidInput("the manufacturer CA folder must be an absolute path")
        make_dirs(folder, mode=PRIVATE_DIR_MODE)
        self.protect()
        localca_conf = folder / "swtpm-localca.conf"
        options = folder / "swtpm-localca.options"
        files = {
            self.setup_conf: (
                "create_certs_tool = /usr/bin/swtpm_localca\n"
                f"create_certs_tool_config = {localca_conf}\n"
                f"create_certs_tool_options = {options}\n"
                "active_pcr_banks = sha256\n"
            ),
            localca_conf: (
                f"statedir = {folder}\n"
                f"signingkey = {folder / 'signkey.pem'}\n"
                f"issuercert = {self.issuer_certificate}\n"
                f"certserial = {folder / 'certserial'}\n"
            ),
            options: (
                f"--platform-manufacturer {self.platform_manufacturer}\n"
                "--platform-version 1.0\n"
                f"--platform-model {self.platform_model}\n"
            ),
        }
        for path, text in files.items():
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                write_atomic(path, text.encode("utf-8"), mode=FILE_MODE)

    def protect(self) -> None:
        """Make the folder 0700, the CA's private keys 0600 and no file writable by others.

        ``swtpm_localca`` writes its files with the process umask (its keys 0640); call this
        after it ran. Files that are not ours (another owner) are left alone.
        """
        if not self.folder.is_dir():
            return
        os.chmod(self.folder, PRIVATE_DIR_MODE)
        for path in self.folder.iterdir():
            if path.is_symlink() or not path.is_file():
                continue
            mode = PRIVATE_FILE_MODE if _is_private_key(path) else FILE_MODE
            if stat.S_IMODE(path.stat().st_mode) != mode:
                os.chmod(path, mode)

    def certificate_paths(self) -> list[Path]:
        """The vendor CA certificates (root, issuing CA) to trust for EK certificates.

        Raises:
            NotFound: No TPM was manufactured with this CA yet, so it does not exist.
        """
        paths = [self.root_certificate, self.issuer_certificate]
        if not all(path.is_file() for path in paths):
            raise NotFound(
                f"no manufacturer CA in {self.folder}",
                hint="manufacture a TPM first (SwtpmInstance.setup)",
                code="tpm.ca.missing",
            )
        return paths


def _is_private_key(path: Path) -> bool:
    """Whether a file of the CA folder holds a private key (by name or by its PEM header)."""
    if "key" in path.name and path.suffix == ".pem":
        return True
    with path.open("rb") as fh:
        return b"PRIVATE KEY" in fh.read(4096)
