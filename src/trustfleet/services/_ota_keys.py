"""Where the OTA keys of a server home live, and opening them as TUF signers.

Tokens and labels (docs/ota.md): ``tf-tuf-root-1..N`` hold one root key each, ``tf-release``
holds ``tuf-targets`` and ``boot``, ``tf-service`` holds ``tuf-snapshot`` and
``tuf-timestamp``. Keys added by a rotation get the label ``<role>-r<root version>``. The map
from TUF key id to (token, label) is ``HOME/ota/keys.json`` (public information only: no PIN,
no key material).
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from securesystemslib.signer import Key  # type: ignore[attr-defined]  # re-exported

from trustfleet.errors import Config, NotFound
from trustfleet.fileio import write_atomic
from trustfleet.keystore import (
    PinSource,
    Pkcs11EcPrivateKey,
    Pkcs11Uri,
    TokenSession,
    find_module,
    generate_pin,
    init_token,
    open_key,
    open_token,
    write_pin_file,
)
from trustfleet.ota import RepoFiles
from trustfleet.ota.release import boot_key_sha256 as release_boot_key_sha256
from trustfleet.ota.signer import Pkcs11Signer
from trustfleet.services._offline import OfflineSigner
from trustfleet.settings import ServerSettings

__all__ = [
    "BOOT_KEY_LABEL",
    "BOOT_KEY_PEM",
    "KEY_MAP",
    "PUBLIC_ROOT",
    "RELEASE_TOKEN",
    "ROOT_LABEL",
    "SERVICE_TOKEN",
    "KeyRef",
    "boot_key_sha256",
    "ensure_token",
    "home_signer",
    "load_key_map",
    "offline_signer",
    "open_home_token",
    "open_signer",
    "open_signers",
    "open_token_key",
    "repo_files",
    "root_token",
    "save_key_map",
]

RELEASE_TOKEN = "tf-release"  # noqa: S105  # a token label, not a password
SERVICE_TOKEN = "tf-service"  # noqa: S105
BOOT_KEY_LABEL = "boot"
BOOT_KEY_PEM = "public/boot-key.pem"
PUBLIC_ROOT = "public/tuf-root.json"
KEY_MAP = "ota/keys.json"
ROOT_LABEL = "tuf-root"  # the first key in each root token; later ones tuf-root-r<version>


def root_token(index: int) -> str:
    """The label of the ``index``-th (1-based) root token."""
    return f"tf-tuf-root-{index}"


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyRef:
    """Where a TUF key lives: its token and label."""

    token: str
    label: str


def repo_files(settings: ServerSettings) -> RepoFiles:
    """The repository folder of a home."""
    return RepoFiles(
        settings.path(settings.ota.repo_dir), lock_timeout_s=settings.ota.lock_timeout_s
    )


def load_key_map(settings: ServerSettings) -> dict[str, KeyRef]:
    """The map key id → token key of a home.

    Raises:
        NotFound: The home has no OTA keys (code ``ota.repo.missing``).
    """
    path = settings.path(KEY_MAP)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise NotFound(
            "this home has no OTA repository",
            hint="create it with 'trustfleet ota init'",
            code="ota.repo.missing",
        ) from exc
    return {keyid: KeyRef(token=v["token"], label=v["label"]) for keyid, v in doc.items()}


def save_key_map(settings: ServerSettings, keys: dict[str, KeyRef]) -> None:
    """Write the key map (atomically)."""
    doc = {k: {"token": v.token, "label": v.label} for k, v in sorted(keys.items())}
    data = json.dumps(doc, indent=2, sort_keys=True).encode("utf-8") + b"\n"
    write_atomic(settings.path(KEY_MAP), data)


def _token_pin(settings: ServerSettings, token: str) -> str:
    source = PinSource.parse(f"file:secrets/{token}.pin", base_dir=settings.home)
    return source.read()


def _module(settings: ServerSettings) -> Path:
    return find_module(settings.keystore.module or None)


def _conf(settings: ServerSettings) -> Path | None:
    conf = settings.keystore.softhsm_conf
    return settings.path(conf) if conf else None


def open_token_key(settings: ServerSettings, ref: KeyRef) -> Pkcs11EcPrivateKey:
    """Open a key in a token of the home, in a session of its own (close it when done)."""
    uri = Pkcs11Uri(token=ref.token, object=ref.label, type="private")
    pin = _token_pin(settings, ref.token)
    return open_key(uri, pin=pin, module=_module(settings), conf=_conf(settings))


def home_signer(settings: ServerSettings, ref: KeyRef, *, key: Key) -> OfflineSigner:
    """A TUF signer for a key in a home token, opened for each signature."""
    return OfflineSigner(key=key, opener=functools.partial(open_token_key, settings, ref))


def offline_signer(
    settings: ServerSettings, conf: Path, ref: KeyRef, *, pin: str, key: Key
) -> OfflineSigner:
    """A TUF signer for a key in an offline token (configuration ``conf``), opened for each
    signature with its custodian's ``pin``."""
    uri = Pkcs11Uri(token=ref.token, object=ref.label, type="private")
    opener = functools.partial(open_key, uri, pin=pin, module=_module(settings), conf=conf)
    return OfflineSigner(key=key, opener=opener)


def open_signer(settings: ServerSettings, keyid: str, keys: dict[str, KeyRef]) -> Pkcs11Signer:
    """A TUF signer for key ``keyid`` (close it when done).

    Raises:
        Config: The key map does not know the key (code ``ota.key.unknown``).
    """
    ref = keys.get(keyid)
    if ref is None:
        raise Config(
            f"no token key is recorded for TUF key {keyid[:16]}",
            hint="restore HOME/ota/keys.json from a backup",
            code="ota.key.unknown",
        )
    key = open_token_key(settings, ref)
    try:
        return Pkcs11Signer(key)
    except BaseException:
        key.close()
        raise


@contextlib.contextmanager
def open_signers(
    settings: ServerSettings, keyids: list[str], keys: dict[str, KeyRef]
) -> Iterator[list[Pkcs11Signer]]:
    """Open signers for several keys, closing them all afterwards."""
    signers: list[Pkcs11Signer] = []
    try:
        for keyid in keyids:
            signers.append(open_signer(settings, keyid, keys))
        yield signers
    finally:
        for signer in signers:
            signer.close()


def boot_key_sha256(settings: ServerSettings) -> str:
    """SHA-256 (hex) over the boot key's SubjectPublicKeyInfo DER (what devices fuse).

    Raises:
        NotFound: The home has no boot key (code ``ota.boot_key.missing``).
        Config: The file is not an EC public key.
    """
    path: Path = settings.path(BOOT_KEY_PEM)
    try:
        public = serialization.load_pem_public_key(path.read_bytes())
    except FileNotFoundError as exc:
        raise NotFound(
            f"no boot key at {path}",
            hint="create the OTA keys with 'trustfleet ota init'",
            code="ota.boot_key.missing",
        ) from exc
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise Config(f"{path} is not an EC public key", code="ota.boot_key.invalid")
    return release_boot_key_sha256(public)


def ensure_token(settings: ServerSettings, label: str) -> str:
    """Create token ``label`` (PIN files in ``secrets/``) unless its PIN file exists.

    Returns:
        The token's user PIN.
    """
    pin_file = settings.path(f"secrets/{label}.pin")
    if pin_file.exists():
        return _token_pin(settings, label)
    pin, so_pin = generate_pin(), generate_pin()
    write_pin_file(settings.path(f"secrets/{label}.so-pin"), so_pin)
    write_pin_file(pin_file, pin)
    init_token(
        module=_module(settings), conf=_conf(settings), label=label, so_pin=so_pin, user_pin=pin
    )
    return pin


def open_home_token(settings: ServerSettings, label: str) -> TokenSession:
    """A logged-in session on a token of the home (close it when done)."""
    pin = _token_pin(settings, label)
    return open_token(module=_module(settings), label=label, pin=pin, conf=_conf(settings))
