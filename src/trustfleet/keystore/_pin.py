"""Where PINs come from: a private file or an environment variable, never argv or a URI."""

from __future__ import annotations

import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from trustfleet.errors import Config, Conflict, InvalidInput

MAX_PIN_FILE_BYTES = 4096
"""A PIN file larger than this is refused."""


@dataclass(frozen=True)
class PinSource:
    """A reference to a PIN (the PIN itself is read on demand and never kept here).

    Attributes:
        kind: ``"file"`` or ``"env"``.
        location: The absolute file path, or the environment variable name.
    """

    kind: Literal["file", "env"]
    location: str

    @classmethod
    def parse(cls, text: str, *, base_dir: Path | None = None) -> PinSource:
        """Parse ``file:PATH`` or ``env:VARNAME``.

        Args:
            text: The PIN source reference.
            base_dir: Directory a relative file path is relative to (default: the working
                directory).

        Returns:
            The PIN source, with an absolute file path.

        Raises:
            InvalidInput: The reference has no known scheme or is empty.
        """
        scheme, sep, rest = text.partition(":")
        if not sep or not rest:
            raise InvalidInput(
                "a PIN source must be 'file:PATH' or 'env:VARNAME'",
                code="keystore.pin_source.syntax",
            )
        if scheme == "file":
            path = Path(rest).expanduser()
            if not path.is_absolute():
                path = (base_dir or Path.cwd()) / path
            return cls(kind="file", location=str(path))
        if scheme == "env":
            if not (rest.replace("_", "a").isalnum() and rest.isascii()):
                raise InvalidInput(
                    f"'{rest}' is not a valid environment variable name",
                    code="keystore.pin_source.syntax",
                )
            return cls(kind="env", location=rest)
        raise InvalidInput(
            f"unknown PIN source scheme '{scheme}'; use 'file:PATH' or 'env:VARNAME'",
            code="keystore.pin_source.syntax",
        )

    def __str__(self) -> str:
        return f"{self.kind}:{self.location}"

    def read(self) -> str:
        """Read the PIN.

        Returns:
            The PIN, without one trailing newline.

        Raises:
            Config: The file is missing, not a regular file, readable or writable by group or
                others, too large or empty; or the variable is unset or empty.
        """
        if self.kind == "env":
            value = os.environ.get(self.location, "")
            if not value:
                raise Config(
                    f"environment variable '{self.location}' holding the PIN is unset or empty",
                    hint=f"set {self.location} in the service environment",
                    code="keystore.pin_source.missing",
                )
            return value
        return _read_pin_file(Path(self.location))


def _read_pin_file(path: Path) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise Config(
            f"cannot open PIN file '{path}': {exc.strerror}",
            hint="create it with 'trustfleet' tooling or chmod 600 an existing one",
            code="keystore.pin_source.missing",
        ) from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Config(f"PIN file '{path}' is not a regular file", code="keystore.pin_file")
        if info.st_mode & 0o077:
            raise Config(
                f"PIN file '{path}' is accessible by group or others "
                f"(mode {stat.S_IMODE(info.st_mode):04o})",
                hint=f"chmod 600 {path}",
                code="keystore.pin_file.mode",
            )
        raw = os.read(fd, MAX_PIN_FILE_BYTES + 1)
    finally:
        os.close(fd)
    if len(raw) > MAX_PIN_FILE_BYTES:
        raise Config(f"PIN file '{path}' is larger than {MAX_PIN_FILE_BYTES} bytes")
    try:
        pin = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Config(f"PIN file '{path}' is not UTF-8", code="keystore.pin_file") from None
    pin = pin.removesuffix("\n")
    if not pin:
        raise Config(f"PIN file '{path}' is empty", code="keystore.pin_file")
    return pin


def write_pin_file(path: Path, pin: str) -> Path:
    """Create a PIN file with mode 0600, atomically, never replacing an existing file.

    The PIN is written to a private temporary file in the same directory, which is then
    hard-linked to ``path`` (fails if ``path`` exists) and removed.

    Args:
        path: Where the PIN file goes.
        pin: The PIN.

    Returns:
        The path written.

    Raises:
        Conflict: ``path`` exists already.
        Config: The directory cannot be written.
    """
    if not pin or "\n" in pin:
        raise InvalidInput("a PIN must be non-empty and a single line", code="keystore.pin")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(tmp, flags, 0o600)
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(pin.encode("utf-8") + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.link(tmp, path)
    except FileExistsError as exc:
        raise Conflict(
            f"PIN file '{path}' exists already", hint="remove it first or use another path"
        ) from exc
    except OSError as exc:
        raise Config(f"cannot write PIN file '{path}': {exc.strerror}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return path


def generate_pin() -> str:
    """A fresh random PIN: 28 URL-safe characters (168 bits) from :mod:`secrets`.

    Under 32 characters because libp11 (OpenSSL's pkcs11 engine) reads at most 31 characters
    from a ``pin-source`` file.
    """
    return secrets.token_urlsafe(21)
