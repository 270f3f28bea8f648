"""Reading a TOML configuration file into a pydantic model, with one readable error.

Used by the server's ``trustfleet.toml`` and the device's ``device.toml``. Every failure is a
:class:`~trustfleet.errors.Config` naming the file, and for a wrong setting its dotted path.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from trustfleet.errors import Config

__all__ = ["load_toml_model"]

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
    try:
        return model(**extra, **raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise Config(f"{path}: setting '{where}': {first['msg']}", hint=invalid_hint) from exc
