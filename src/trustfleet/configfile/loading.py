"""Reading a TOML configuration file into a pydantic model, with one readable error.

Every failure is a :class:`~trustfleet.errors.Config` naming the file, and for a wrong setting
its dotted path. :func:`check_loaded_code` is the check the server and the device run on what
they load into the process.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from trustfleet.errors import Config
from trustfleet.fileio import check_trusted

__all__ = ["check_loaded_code", "load_toml_model", "validate_model"]

M = TypeVar("M", bound=BaseModel)


def load_toml_model(
    path: Path,
    model: type[M],
    *,
    extra: Mapping[str, Any],
    missing: Config,
    invalid_hint: str,
) -> M:
    """Parse ``path`` and validate it as ``model`` (with ``extra`` fields added).

    Args:
        path: The TOML file.
        model: The pydantic model of the whole file.
        extra: Fields that are not in the file (e.g. the directory it lives in).
        missing: The error to raise when the file does not exist.
        invalid_hint: The hint for a wrong, unknown or missing setting.

    Raises:
        Config: The file is missing, is not TOML, or has a wrong, unknown or missing setting.
    """
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise missing from exc
    except NotADirectoryError as exc:
        culprit = next((p for p in path.parents if p.is_file()), path.parent)
        raise Config(
            f"{culprit} is a file, not a directory",
            hint="give the directory (--home or --device), not a file",
        ) from exc
    except OSError as exc:
        raise Config(
            f"cannot read {path}: {exc.strerror}", hint="check the path and its permissions"
        ) from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise Config(f"cannot read {path}: {exc}", hint="fix the file's TOML syntax") from exc
    clash = next((key for key in extra if key in raw), None)
    if clash is not None:  # e.g. 'home': given by where the file is, never by the file
        raise Config(f"{path}: setting '{clash}': not allowed in the file", hint=invalid_hint)
    return validate_model(model, {**raw, **extra}, path=path, hint=invalid_hint)


def validate_model(model: type[M], data: Mapping[str, Any], *, path: Path, hint: str) -> M:
    """Validate ``data`` as ``model``; the first wrong setting becomes one readable error.

    Raises:
        Config: A wrong, unknown or missing setting, named by its dotted path in ``path``.
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise Config(f"{path}: setting '{where}': {first['msg']}", hint=hint) from exc


def check_loaded_code(module: str, softhsm_conf: Path) -> None:
    """Refuse a PKCS#11 module or SoftHSM2 configuration that others could change.

    Used by the server's and the device's settings: ``module`` (when set) and every folder
    above it, and ``softhsm_conf`` (when it exists). The process, maybe root, loads the module.

    Raises:
        Config: One of them is writable by group or others or owned by another user (code
            ``config.path.unsafe``).
    """
    if module:
        check_trusted(Path(module).expanduser(), what="the PKCS#11 module", parents=True)
    if softhsm_conf.exists():
        check_trusted(softhsm_conf, what="the SoftHSM2 configuration", parents=True)
