"""One kind of configuration file: where it lives, how it is checked, loaded, saved, changed.

The server's ``trustfleet.toml`` and the device's ``device.toml`` are each one
:class:`ConfigFile`: the same trusted-path checks, the same readable errors, and both written
from their models (:func:`~trustfleet.configfile.rendering.render_toml_model`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from trustfleet.configfile.loading import load_toml_model, validate_model
from trustfleet.configfile.rendering import merge_changes, render_toml_model
from trustfleet.errors import Config
from trustfleet.fileio import check_trusted, write_atomic

__all__ = ["ConfigFile"]

M = TypeVar("M", bound=BaseModel)


def _no_check(path: Path, settings: Any) -> None:
    """No checks beyond the model's own."""


@dataclass(frozen=True)
class ConfigFile(Generic[M]):
    """A configuration file ``<folder>/<name>`` holding one ``model``.

    Attributes:
        model: The model of the whole file.
        name: The file's name inside its folder, e.g. ``trustfleet.toml``.
        folder_field: The model's field set to the (resolved) folder, not written in the file.
        header: Comment lines at the top of the written file.
        what: The folder and the file, for messages (``"the server home"``, ``"the
            configuration file"``).
        absent: The message when the file is missing (with ``{folder}``) and its hint.
        invalid_hint: The hint for a wrong, unknown or missing setting.
        check: Checks beyond the model's, run on every load and before every save of a
            change: ``check(path, settings)`` raises :class:`~trustfleet.errors.Config`.
    """

    model: type[M]
    name: str
    folder_field: str
    header: tuple[str, ...]
    what: tuple[str, str]
    absent: tuple[str, str]
    invalid_hint: str
    check: Callable[[Path, M], None] = _no_check

    def load(self, folder: Path) -> M:
        """Read and check ``folder/<name>``.

        The folder (and the folders above it) and the file must be owned by root or this user
        and not writable by group or others.

        Raises:
            Config: The file is missing, is not TOML, or has a wrong, unknown or missing
                setting; or one of those paths could be changed by someone else (code
                ``config.path.unsafe``); or ``check`` refuses it.
        """
        path = folder / self.name
        absent, hint = self.absent
        missing = Config(f"{absent.format(folder=folder)} (missing {self.name})", hint=hint)
        if folder.is_dir() and path.is_file():
            check_trusted(folder, what=self.what[0], parents=True)
            check_trusted(path, what=self.what[1], parents=True)
        settings = load_toml_model(
            path,
            self.model,
            extra={self.folder_field: folder.resolve()},
            missing=missing,
            invalid_hint=self.invalid_hint,
        )
        self.check(path, settings)
        return settings

    def render(self, settings: M) -> str:
        """The file's text for ``settings``: TOML by tomli-w, commented from the model."""
        return render_toml_model(settings, header=self.header, exclude={self.folder_field})

    def save(self, settings: M) -> Path:
        """Write ``settings`` to its folder's file (atomically, mode 0644) and return the path."""
        path = Path(getattr(settings, self.folder_field)) / self.name
        write_atomic(path, self.render(settings).encode("utf-8"))
        return path

    def update(self, folder: Path, changes: Mapping[str, Mapping[str, Any]]) -> M:
        """Load the file, apply ``{"section": {"key": value}}``, check, save, return.

        Raises:
            Config: The file cannot be loaded; or an unknown section or key, or a wrong value
                (nothing is written then).
        """
        settings = self.load(folder)
        path = folder / self.name
        current = settings.model_dump(exclude={self.folder_field})
        merged = merge_changes(self.model, current, changes, path=path)
        merged[self.folder_field] = getattr(settings, self.folder_field)
        updated = validate_model(self.model, merged, path=path, hint=self.invalid_hint)
        self.check(path, updated)
        self.save(updated)
        return updated
