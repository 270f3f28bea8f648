"""Mosquitto's executables on this host, and the guard plugin built from the package's C source.

The guard (``plugin/tf_guard.c`` with its service-side signals ``plugin/tf_stats.c``, compiled as
one unit; docs/adr/0011-broker-guard.md) is compiled with the host's C compiler against
Mosquitto's plugin headers (Debian: ``mosquitto-dev``, ``libssl-dev``) into
``HOME/broker/tf_guard-<hash of the source>.so``: built once per source version, atomically.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sysconfig
import tempfile
from importlib import resources
from pathlib import Path

from trustfleet.errors import Config

__all__ = ["build_guard", "find_dynsec_plugin", "find_mosquitto", "guard_source"]

_MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
_PLUGIN_NAME = "mosquitto_dynamic_security.so"
_GUARD_SOURCES = ("tf_stats.c", "tf_guard.c")  # one translation unit, in this order
_GUARD_PREFIX = "tf_guard-"
_CFLAGS = ("-std=c11", "-D_POSIX_C_SOURCE=200809L", "-O2", "-Wall", "-Wextra", "-Werror",
           "-fPIC", "-shared")  # fmt: skip
_COMPILE_OUTPUT_CHARS = 400


def find_mosquitto(configured: Path | None) -> Path:
    """The ``mosquitto`` executable.

    Raises:
        Config: It is not installed.
    """
    if configured is not None:
        candidates: list[str] = [str(configured)]
    else:
        found = shutil.which("mosquitto")
        candidates = ([found] if found else []) + list(_MOSQUITTO_CANDIDATES)
    for candidate in candidates:
        if Path(candidate).is_file():
            return Path(candidate)
    raise Config(
        "Mosquitto is not installed.",
        hint="Install it (Debian: apt-get install mosquitto mosquitto-clients).",
        code="broker.mosquitto_missing",
    )


def find_dynsec_plugin(configured: Path | None) -> Path:
    """The dynamic-security plugin shared object.

    Raises:
        Config: It cannot be found.
    """
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    candidates = (
        [configured]
        if configured is not None
        else [
            Path("/usr/lib") / multiarch / _PLUGIN_NAME,
            Path("/usr/lib") / _PLUGIN_NAME,
            Path("/usr/local/lib") / _PLUGIN_NAME,
        ]
    )
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise Config(
        "The Mosquitto dynamic security plugin was not found.",
        hint="Install Mosquitto 2.0 or later, which ships mosquitto_dynamic_security.so.",
        code="broker.plugin_missing",
    )


def guard_source() -> bytes:
    """The guard plugin's C source, as shipped in the package (its files, concatenated)."""
    plugin = resources.files("trustfleet.broker").joinpath("plugin")
    return b"\n".join(plugin.joinpath(name).read_bytes() for name in _GUARD_SOURCES)


def build_guard(directory: Path, *, timeout_s: float, mode: int = 0o644) -> Path:
    """The guard plugin for the packaged source, compiled into ``directory`` if not there yet.

    Args:
        directory: Where the shared object lives (``HOME/broker``).
        timeout_s: Bound on the compiler run.
        mode: The shared object's file mode.

    Returns:
        The shared object (``tf_guard-<sha256 prefix>.so``).

    Raises:
        Config: No C compiler, no Mosquitto or OpenSSL headers, or the build failed.
    """
    source = guard_source()
    target = directory / f"{_GUARD_PREFIX}{hashlib.sha256(source).hexdigest()[:16]}.so"
    if target.is_file():
        return target
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise Config(
            "No C compiler to build the broker's guard plugin.",
            hint="Install gcc, mosquitto-dev and libssl-dev (scripts/bootstrap.sh does).",
            code="broker.guard.compiler",
        )
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tf_guard-", suffix=".so")
    os.close(fd)
    try:
        _compile(compiler, source, Path(tmp), timeout_s=timeout_s)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    for old in directory.glob(f"{_GUARD_PREFIX}*.so"):
        if old != target:
            old.unlink(missing_ok=True)
    return target


def _compile(compiler: str, source: bytes, output: Path, *, timeout_s: float) -> None:
    args = [compiler, *_CFLAGS, "-x", "c", "-o", str(output), "-", "-lcrypto"]
    try:
        result = subprocess.run(
            args, input=source, capture_output=True, timeout=timeout_s, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Config(
            f"The broker's guard plugin could not be built: {exc}.",
            code="broker.guard.build",
        ) from exc
    if result.returncode != 0:
        detail = result.stderr.decode(errors="replace").strip()[:_COMPILE_OUTPUT_CHARS]
        missing = "mosquitto" in detail and "No such file" in detail
        raise Config(
            "The broker's guard plugin could not be built"
            + (" (Mosquitto's plugin headers are missing)." if missing else f": {detail}"),
            hint="Install gcc, mosquitto-dev and libssl-dev (scripts/bootstrap.sh does).",
            code="broker.guard.build",
        )
