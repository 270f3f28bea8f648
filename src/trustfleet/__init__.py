"""TrustFleet: identity, communication, update, integrity and monitoring for IoT fleets.

The product ships as two distributions built from this one source tree (ADR 0020):
``trustfleet-agent`` (the device) and ``trustfleet`` (the server, which depends on the agent's);
the development checkout installs as ``trustfleet-dev``. :func:`product_version` reads the
version from whichever is installed.
"""

from __future__ import annotations

import functools

__all__ = ["DISTRIBUTIONS", "product_version"]

DISTRIBUTIONS = ("trustfleet-agent", "trustfleet", "trustfleet-dev")
"""The distribution names that may hold this package, in the order they are looked up."""


@functools.cache
def product_version() -> str:
    """The installed product's version, from its package metadata (read once, on first call).

    Returns:
        The version of the first of :data:`DISTRIBUTIONS` installed, or ``"unknown"`` when the
        sources run without any of them installed.
    """
    from importlib import metadata  # noqa: PLC0415  # no I/O and no import cost at import

    for name in DISTRIBUTIONS:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def __getattr__(name: str) -> str:
    """``trustfleet.__version__``: kept for callers of the old constant, resolved lazily."""
    if name == "__version__":
        return product_version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
