"""The server process: HTTPS workers, the broker side, attestation and their supervision.

What other packages use from the private modules is exported here, loaded on first use so that
importing one server module (an HTTPS worker's, say) does not bring in the attestation side and
its MQTT client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trustfleet.server._attest_side import publish_challenge

__all__ = ["publish_challenge"]


def __getattr__(name: str) -> Any:
    """``publish_challenge`` from ``_attest_side`` on first use (PEP 562)."""
    if name == "publish_challenge":
        from trustfleet.server._attest_side import publish_challenge  # noqa: PLC0415

        return publish_challenge
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
