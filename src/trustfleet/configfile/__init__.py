"""Configuration files: TOML read into pydantic models and written from them.

Used by the server's ``trustfleet.toml`` (:mod:`trustfleet.settings`) and the device's
``device.toml`` (:mod:`trustfleet.configfile.device`, the one schema the factory writes and the
agent reads). Every failure is a :class:`~trustfleet.errors.Config` naming the file, and for a
wrong setting its dotted path.
"""

from __future__ import annotations

from trustfleet.configfile.files import ConfigFile
from trustfleet.configfile.loading import check_loaded_code, load_toml_model, validate_model
from trustfleet.configfile.rendering import ConfigModel, merge_changes, render_toml_model

__all__ = [
    "ConfigFile",
    "ConfigModel",
    "check_loaded_code",
    "load_toml_model",
    "merge_changes",
    "render_toml_model",
    "validate_model",
]
