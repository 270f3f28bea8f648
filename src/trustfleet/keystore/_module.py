"""Finding a PKCS#11 module and writing SoftHSM2 configurations."""

from __future__ import annotations

import os
from pathlib import Path

from trustfleet.errors import Config
from trustfleet.fileio import FILE_MODE, PRIVATE_DIR_MODE, check_trusted, make_dirs, write_atomic

DEFAULT_MODULE_CANDIDATES: tuple[Path, ...] = (
    Path("/usr/lib/softhsm/libsofthsm2.so"),
    Path("/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"),
    Path("/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so"),
    Path("/usr/lib/arm-linux-gnueabihf/softhsm/libsofthsm2.so"),
    Path("/usr/lib64/pkcs11/libsofthsm2.so"),
    Path("/usr/lib64/softhsm/libsofthsm2.so"),
    Path("/usr/local/lib/softhsm/libsofthsm2.so"),
    Path("/opt/homebrew/lib/softhsm/libsofthsm2.so"),
)
"""Where SoftHSM2's PKCS#11 module is installed by the common distributions."""

SYSTEM_TOKEN_DIRS: tuple[Path, ...] = (
    Path("/var/lib/softhsm/tokens"),
    Path("/usr/local/var/lib/softhsm/tokens"),
)
"""System-wide SoftHSM2 token directories, which TrustFleet never uses."""

_MODULE_HINT = "install SoftHSM2 (apt-get install softhsm2) or give the path of your PKCS#11 module"


def find_module(explicit: str | Path | None = None) -> Path:
    """Locate the PKCS#11 module to load.

    Args:
        explicit: A module path given by the operator; when set, only it is considered.

    The module is code this process (maybe root) will load: it and every folder above it must
    be owned by root or this user and not writable by group or others.

    Returns:
        The absolute path of the module.

    Raises:
        Config: The explicit path is not a file, or no known SoftHSM2 location has one; or
            someone else could replace the module (code ``config.path.unsafe``).
    """
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise Config(
                f"PKCS#11 module '{path}' does not exist or is not a file",
                hint=_MODULE_HINT,
                code="keystore.module.missing",
            )
        check_trusted(path, what="the PKCS#11 module", parents=True)
        return path.resolve()
    for candidate in DEFAULT_MODULE_CANDIDATES:
        if candidate.is_file():
            check_trusted(candidate, what="the PKCS#11 module", parents=True)
            return candidate.resolve()
    raise Config(
        "no PKCS#11 module found in the known SoftHSM2 locations",
        hint=_MODULE_HINT,
        code="keystore.module.missing",
    )


_TOKENDIR_KEY = "directories.tokendir"
_MAX_CONF_BYTES = 64 * 1024


def softhsm_token_dir(conf_path: Path) -> Path | None:
    """The token directory a SoftHSM2 configuration names (its first 64 KiB), or None.

    None too when the file cannot be read: the caller decides whether that matters.
    """
    try:
        with conf_path.open("rb") as fh:
            text = fh.read(_MAX_CONF_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == _TOKENDIR_KEY:
            return Path(value.strip())
    return None


def write_softhsm_conf(conf_path: Path, *, token_dir: Path) -> Path:
    """Write a SoftHSM2 configuration that keeps its tokens in ``token_dir``.

    The token directory is created with mode 0700. The system-wide token directory is refused.

    Args:
        conf_path: Where to write the configuration file.
        token_dir: The directory that holds this configuration's tokens.

    Returns:
        The absolute path of the configuration file.

    Raises:
        Config: ``token_dir`` is a system-wide token directory or cannot be created.
    """
    token_dir = token_dir.expanduser().resolve()
    if any(token_dir == system.resolve() for system in SYSTEM_TOKEN_DIRS):
        raise Config(
            f"refusing to use the system-wide SoftHSM2 token directory '{token_dir}'",
            hint="give each service or device its own token directory",
            code="keystore.conf.system_tokendir",
        )
    if "\n" in str(token_dir):
        raise Config("token directory path contains a newline")
    try:
        make_dirs(token_dir, mode=PRIVATE_DIR_MODE)
        os.chmod(token_dir, PRIVATE_DIR_MODE)
        conf_path = conf_path.expanduser().resolve()
        text = (
            "# Written by TrustFleet.\n"
            f"{_TOKENDIR_KEY} = {token_dir}\n"
            "objectstore.backend = file\n"
            "log.level = ERROR\n"
            "slots.removable = false\n"
        )
        write_atomic(conf_path, text.encode("utf-8"), mode=FILE_MODE)
    except OSError as exc:
        raise Config(
            f"cannot write the SoftHSM2 configuration '{conf_path}': {exc.strerror}",
            hint="check the directory permissions",
        ) from exc
    return conf_path
