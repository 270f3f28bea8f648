"""Names the broker's modules share (no imports of their own, so any of them may use these)."""

from __future__ import annotations

__all__ = ["ADMIN_USERNAME", "CONTROL_TOPIC_FILTER", "DEVICE_TOPIC_ROOT", "UNPRIVILEGED_USER"]

DEVICE_TOPIC_ROOT = "tf/v1/d"
"""Every device owns ``tf/v1/d/<device-id>/#`` and nothing else."""

ADMIN_USERNAME = "tf_broker_admin"
"""The dynamic-security admin. The ``_`` keeps it outside the device-id alphabet."""

CONTROL_TOPIC_FILTER = "$CONTROL/dynamic-security/#"

UNPRIVILEGED_USER = "mosquitto"
"""Who Mosquitto runs as when the service runs as root (Debian's package creates the user)."""
