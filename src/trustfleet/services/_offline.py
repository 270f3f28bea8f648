"""The offline folder: the tokens of the root CA and of the TUF root keys, outside the home.

Layout (docs/lifecycle.md, "Offline root and ceremonies")::

    OFFLINE/ (0700)        stands for removable media the custodians keep
      softhsm2.conf (0644) its own SoftHSM2 configuration (tokens in OFFLINE/tokens/)
      tokens/ (0700)       the tokens tf-root (key root-ca) and tf-tuf-root-1..N (one TUF root
                           key each), each with its own PIN; no PIN is stored here or in the home

A ceremony makes this configuration active in its process (one SoftHSM2 configuration at a
time: ADR 0002), so it never holds a session on a home token while it signs with an offline
key: :class:`OfflineSigner` opens its key for each signature and closes it again.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from securesystemslib.signer import (  # type: ignore[attr-defined]  # re-exported, no __all__
    Key,
    Signature,
    Signer,
    SSlibKey,
)

from trustfleet.errors import Config, InvalidInput, Unavailable
from trustfleet.fileio import PRIVATE_DIR_MODE, make_dirs, removed_on_failure
from trustfleet.keystore import (
    Pkcs11Uri,
    find_module,
    generate_pin,
    softhsm_token_dir,
    write_pin_file,
    write_softhsm_conf,
)
from trustfleet.ota.signer import Pkcs11Signer

if TYPE_CHECKING:
    from trustfleet.keystore import Pkcs11EcPrivateKey

__all__ = [
    "OFFLINE_CONF",
    "ROOT_CA_LABEL",
    "ROOT_CA_TOKEN",
    "OfflineFolder",
    "OfflineSigner",
    "default_offline_dir",
    "key_uri",
    "module_of",
    "new_offline_folders",
    "new_offline_pins",
    "offline_token_labels",
    "write_pins",
]

ROOT_CA_TOKEN = "tf-root"  # noqa: S105  # a token label, not a password
ROOT_CA_LABEL = "root-ca"
OFFLINE_CONF = "softhsm2.conf"
_PIN_SUFFIX = ".pin"
_SO_PIN_SUFFIX = ".so-pin"


def offline_token_labels(root_keys: int) -> list[str]:
    """The offline tokens of a home whose TUF root has ``root_keys`` keys."""
    return [ROOT_CA_TOKEN, *(f"tf-tuf-root-{i}" for i in range(1, root_keys + 1))]


def new_offline_pins(root_keys: int) -> dict[str, str]:
    """Fresh PINs and SO-PINs for every offline token, by file name (``<token>.pin``,
    ``<token>.so-pin``)."""
    pins: dict[str, str] = {}
    for label in offline_token_labels(root_keys):
        pins[label + _PIN_SUFFIX] = generate_pin()
        pins[label + _SO_PIN_SUFFIX] = generate_pin()
    return pins


def write_pins(folder: Path, pins: Mapping[str, str]) -> None:
    """Write each PIN to ``folder/<name>`` (0600, never replacing a file; folder 0700)."""
    make_dirs(folder, mode=PRIVATE_DIR_MODE)
    os.chmod(folder, PRIVATE_DIR_MODE)
    for name, pin in sorted(pins.items()):
        write_pin_file(folder / name, pin)


@dataclass(frozen=True)
class OfflineFolder:
    """An offline folder (made by ``server init``)."""

    path: Path

    @property
    def conf(self) -> Path:
        """Its SoftHSM2 configuration."""
        return self.path / OFFLINE_CONF

    @classmethod
    def create(cls, path: Path) -> OfflineFolder:
        """Make the folder (0700) with its own SoftHSM2 configuration and token store.

        Raises:
            InvalidInput: ``path`` is a link, a file, or a folder that is not empty
                (code ``offline.path.invalid``).
        """
        _check_new_folder(path, what="offline folder", option="--offline")
        make_dirs(path, mode=PRIVATE_DIR_MODE)
        os.chmod(path, PRIVATE_DIR_MODE)
        folder = cls(path.resolve())
        write_softhsm_conf(folder.conf, token_dir=folder.path / "tokens")
        return folder

    @classmethod
    def open(cls, path: Path) -> OfflineFolder:
        """An existing offline folder, wherever it is mounted now.

        Media move: if its SoftHSM2 configuration names the token store at another path (the
        folder was moved or mounted elsewhere), the configuration is written again for here.

        Raises:
            Unavailable: It is not there (code ``ceremony.offline.missing``).
        """
        folder = cls(path.expanduser().resolve())
        if not folder.conf.is_file() or not (folder.path / "tokens").is_dir():
            raise Unavailable(
                f"no offline folder at {path} (no {OFFLINE_CONF})",
                hint="bring the custodians' offline folder and pass it with --offline",
                code="ceremony.offline.missing",
            )
        tokens = folder.path / "tokens"
        if softhsm_token_dir(folder.conf) != tokens:
            write_softhsm_conf(folder.conf, token_dir=tokens)  # moved since the last ceremony
        return folder


@dataclass(eq=False)
class OfflineSigner(Signer):
    """A TUF signer whose token key is opened for each signature and closed right after.

    So one process can sign with keys of two SoftHSM2 configurations (the home's and the
    offline folder's) one after the other (ADR 0002: one active configuration).

    Attributes:
        key: The securesystemslib public key.
        opener: Opens the token key (a new session).
    """

    key: Key
    opener: Callable[[], Pkcs11EcPrivateKey] = field(repr=False)

    @property
    def public_key(self) -> Key:
        """The public key its signatures verify with."""
        return self.key

    def sign(self, payload: bytes) -> Signature:
        """Open the key, sign ``payload`` (ECDSA P-256, SHA-256), close the key."""
        token_key = self.opener()
        try:
            expected = self.key if isinstance(self.key, SSlibKey) else None
            return Pkcs11Signer(token_key, public_key=expected).sign(payload)
        finally:
            token_key.close()

    @classmethod
    def from_priv_key_uri(
        cls, priv_key_uri: str, public_key: Key, secrets_handler: Any = None
    ) -> Signer:
        """Not supported.

        Raises:
            Config: Always.
        """
        raise Config("an OfflineSigner is built from an opener", code="ota.signer.uri")


def key_uri(token: str, label: str) -> Pkcs11Uri:
    """The URI of a private key in a token."""
    return Pkcs11Uri(token=token, object=label, type="private")


def module_of(settings: Any) -> Path:
    """The home's PKCS#11 module (the offline tokens use the same one)."""
    return find_module(settings.keystore.module or None)


def default_offline_dir(home: Path) -> Path:
    """Where ``server init`` puts the offline folder when not told: ``<home>-offline`` beside
    the home (to be moved to removable media by the custodians)."""
    absolute = home.expanduser().absolute()
    return absolute.with_name(absolute.name + "-offline")


def _check_apart(home: Path, other: Path, *, what: str, option: str) -> None:
    home_abs, other_abs = home.expanduser().absolute(), other.expanduser().absolute()
    if other_abs == home_abs or home_abs in other_abs.parents or other_abs in home_abs.parents:
        raise InvalidInput(
            f"the {what} {other} must be outside the server home {home} (and not above it)",
            hint=f"give another folder with {option}", code="offline.path.invalid",
        )  # fmt: skip


def _check_new_folder(path: Path, *, what: str, option: str) -> None:
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise InvalidInput(
            f"the {what} {path} is a link or a file",
            hint=f"give a new folder with {option}", code="offline.path.invalid",
        )  # fmt: skip
    if path.exists() and any(path.iterdir()):
        raise InvalidInput(
            f"the {what} {path} exists and is not empty",
            hint=f"give a new folder with {option}", code="offline.path.invalid",
        )  # fmt: skip


@contextmanager
def new_offline_folders(
    home: Path, *, offline: Path, pins_out: Path | None
) -> Iterator[OfflineFolder]:
    """Make the offline folder (and check ``pins_out``) for a new home; both are removed (or
    emptied) again if the block fails, like the home (``server init`` is atomic).

    Raises:
        InvalidInput: A folder is a link, a file, not empty, or inside the home
            (code ``offline.path.invalid``).
    """
    _check_apart(home, offline, what="offline folder", option="--offline")
    _check_new_folder(offline, what="offline folder", option="--offline")
    if pins_out is not None:
        _check_apart(home, pins_out, what="PIN folder", option="--pins-out")
        _check_apart(offline, pins_out, what="PIN folder", option="--pins-out")
        _check_new_folder(pins_out, what="PIN folder", option="--pins-out")
    offline_created = not offline.exists()
    pins_created = pins_out is not None and not pins_out.exists()
    with contextlib.ExitStack() as stack:
        folder = OfflineFolder.create(offline)
        stack.enter_context(removed_on_failure(folder.path, created=offline_created))
        if pins_out is not None:
            make_dirs(pins_out, mode=PRIVATE_DIR_MODE)
            stack.enter_context(removed_on_failure(pins_out, created=pins_created))
        yield folder
