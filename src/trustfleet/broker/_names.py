"""Names the broker's modules share (no broker imports, so any of them may use these)."""

from __future__ import annotations

from trustfleet.wire import DEVICE_TOPIC_ROOT

__all__ = ["ADMIN_USERNAME", "CONTROL_TOPIC_FILTER", "DEVICE_TOPIC_ROOT", "UNPRIVILEGED_USER"]

ADMIN_USERNAME = "tf_broker_admin"
"""The dynamic-security admin. The ``_`` keeps it outside the device-id alphabet."""

CONTROL_TOPIC_FILTER = "$CONTROL/dynamic-security/#"

UNPRIVILEGED_USER = "mosquitto"
"""Who Mosquitto runs as when the service runs as root (Debian's package creates the user)."""
