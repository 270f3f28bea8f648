"""Settings of a witness home, read from and written to ``DIR/witness.toml``.

A witness (``trustfleet witness``) is run by another party than the log's operator: its own
home, its own token and key, and the keys of the logs it watches. Relative paths in the file are
relative to the home. Nothing here runs at import: call :func:`load_witness_settings`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from trustfleet.configfile import ConfigFile, ConfigModel, check_loaded_code
from trustfleet.settings.sections import KeystoreSettings

__all__ = [
    "WITNESS_CONFIG_FILE",
    "WitnessHomeSettings",
    "load_witness_settings",
    "save_witness_settings",
]

WITNESS_CONFIG_FILE = "witness.toml"
_KEY_NAME = r"[^\s+\u2014]{1,256}"  # a signed-note key name: no space, '+' or em dash


class WitnessHomeSettings(ConfigModel):
    """Everything a witness process needs, with paths resolved against ``home``."""

    home: Path
    name: str = Field(pattern=rf"^{_KEY_NAME}$")
    """The witness's name: the key name of its cosignatures (e.g. 'witness.example/w1')."""
    key: str = (
        "pkcs11:token=tf-witness;object=witness;type=private?pin-source=file:secrets/tf-witness.pin"
    )
    """The witness's Ed25519 key in its token, as an RFC 7512 URI with its PIN source."""
    logs: list[str] = Field(min_length=1, max_length=1000)
    """Verifier keys (vkeys 'name+keyid+base64', type Ed25519) of the logs it witnesses: a
    checkpoint's origin is its log key's name."""
    keystore: KeystoreSettings = KeystoreSettings()
    host: str = "127.0.0.1"
    """Address 'witness serve' listens on (HTTPS, TLS 1.3)."""
    port: int = Field(default=8444, ge=1, le=65535)
    tls_cert: str = "public/witness-tls.pem"
    """The witness's self-signed TLS certificate: give it to the logs that call it."""
    tls_key: str = "secrets/witness-tls.key"
    max_body_bytes: int = Field(default=72 * 1024, ge=1024, le=1024 * 1024)
    """Larger add-checkpoint bodies get 413."""
    request_timeout_s: float = Field(default=20.0, gt=0, le=3600)
    """A whole request (head and body)."""

    def path(self, relative: str) -> Path:
        """Resolve a path from the file against the home directory."""
        candidate = Path(relative)
        return candidate if candidate.is_absolute() else self.home / candidate


def _check(path: Path, settings: WitnessHomeSettings) -> None:
    """The PKCS#11 module and the SoftHSM2 configuration are trusted."""
    check_loaded_code(settings.keystore.module, settings.path(settings.keystore.softhsm_conf))


_FILE = ConfigFile(
    model=WitnessHomeSettings,
    name=WITNESS_CONFIG_FILE,
    folder_field="home",
    header=(
        "TrustFleet witness configuration (c2sp.org/tlog-witness). Paths are relative to this",
        "file's directory. The PIN is never written here: the key URI names its PIN file.",
    ),
    what=("the witness home", "the witness configuration file"),
    absent=(
        "no witness home at {folder}",
        "create one with 'trustfleet witness init --home DIR --name NAME --log VKEY'",
    ),
    invalid_hint="see the comments in witness.toml for the allowed values",
    check=_check,
)


def load_witness_settings(home: Path) -> WitnessHomeSettings:
    """Read and check ``home/witness.toml``.

    Raises:
        Config: The file is missing, is not TOML, or has a wrong or unknown setting; or a path
            could be changed by someone else (code ``config.path.unsafe``).
    """
    return _FILE.load(home)


def save_witness_settings(settings: WitnessHomeSettings) -> Path:
    """Write ``settings`` to ``settings.home/witness.toml`` (atomically) and return its path."""
    return _FILE.save(settings)
