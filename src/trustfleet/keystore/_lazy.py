"""Names a package loads on first use (PEP 562), for the keystore and its TPM adapter."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_attributes"]


def lazy_attributes(
    package: str, namespace: dict[str, Any], lazy: Mapping[str, str]
) -> Callable[[str], Any]:
    """The module ``__getattr__`` of ``package``: it imports a lazy name's module on first use.

    Args:
        package: The package's ``__name__`` (for the AttributeError of an unknown name).
        namespace: The package's ``globals()``; a loaded name is stored there, so the next
            lookup does not come back here.
        lazy: Each lazy name and the module that defines it.

    Returns:
        The function to bind as the package's ``__getattr__``.
    """

    def load(name: str) -> Any:
        module = lazy.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    return load
