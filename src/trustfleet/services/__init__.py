"""The server's use cases: each public module is one service the CLI and the server call.

What other packages use from the private modules is exported here, loaded on first use so that
importing one service does not bring in the attestation policy (cryptography, pydantic).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trustfleet.services._attestation_policy import next_due

__all__ = ["next_due"]


def __getattr__(name: str) -> Any:
    """``next_due`` from ``_attestation_policy`` on first use (PEP 562)."""
    if name == "next_due":
        from trustfleet.services._attestation_policy import next_due  # noqa: PLC0415

        return next_due
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
