"""The simulated TPM manufacturer: the CA that signs each swtpm's EK certificate.

``swtpm_localca`` signs each device's EK certificate with a CA whose key is a plain file in a
folder we choose (:class:`ManufacturerCa`). That CA stands for the TPM vendor (Infineon,
STMicro, Nuvoton, …), whose CA certificates an operator configures as trusted for EK
certificates. It is **not** a TrustFleet key and never signs anything of TrustFleet's; the
system-wide ``/etc/swtpm*`` configuration and ``/var/lib/swtpm-localca`` are never used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trustfleet.errors import InvalidInput, NotFound

__all__ = ["ManufacturerCa"]


@dataclass(frozen=True)
class ManufacturerCa:
    """The simulated TPM vendor's CA: configuration and key files in ``folder``.

    ``swtpm_localca`` creates a root CA and an issuing CA (key files, mode 0640) in the folder
    the first time a TPM is manufactured. In production these keys belong to the TPM vendor.

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
        folder.mkdir(parents=True, exist_ok=True)
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
                path.write_text(text, encoding="utf-8")

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
