"""The dynamic-security plugin's part: its initial state (only the admin) and quarantine commands.

Pure: these functions return JSON-ready values; :mod:`trustfleet.broker._files` writes the state
and :mod:`trustfleet.broker._control` sends the commands.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets

from trustfleet.broker._config import ADMIN_USERNAME, CONTROL_TOPIC_FILTER, DEVICE_TOPIC_ROOT
from trustfleet.errors import Config
from trustfleet.pki import DEVICE_ID_PATTERN

__all__ = ["QUARANTINE_LEAVES", "quarantine_commands", "release_commands", "render_dynsec_state"]

_ADMIN_ROLE = "tf-control"

_PBKDF2_ITERATIONS = 1000  # the password is 256 random bits; iterations add little
_SALT_BYTES = 12  # SALT_LEN in mosquitto 2.0 (src/password_mosq.h)


QUARANTINE_LEAVES = ("ota", "attest")
"""What a quarantined device keeps: its ``ota/`` and ``attest/`` topics (an update can heal it)."""

_ALLOW_KINDS = ("publishClientSend", "publishClientReceive", "subscribePattern",
                "unsubscribePattern")  # fmt: skip
_DENY_KINDS = ("publishClientSend", "publishClientReceive", "subscribePattern")


def _quarantine_role(device_id: str) -> str:
    return f"tf-quarantine-{device_id}"


def quarantine_commands(device_id: str) -> list[dict[str, object]]:
    """Dynamic-security commands that confine a device to its ``ota/`` and ``attest/`` topics.

    The ACL file's pattern lets every device use ``tf/v1/d/<id>/#``; the plugin is asked
    first, and for a client it knows an explicit deny ends the check. So the device becomes a
    plugin client with a role of its own: allow its quarantine leaves (priority 10), deny
    everything else (priority 0). Its certificate login is unchanged (the CN is the username).
    """
    if not DEVICE_ID_PATTERN.fullmatch(device_id):
        raise Config(f"{device_id[:70]!r} is not a device id", code="broker.quarantine.id")
    acls: list[dict[str, object]] = [
        {
            "acltype": kind,
            "topic": f"{DEVICE_TOPIC_ROOT}/{device_id}/{leaf}/#",
            "allow": True,
            "priority": 10,
        }
        for leaf in QUARANTINE_LEAVES
        for kind in _ALLOW_KINDS
    ]
    acls += [{"acltype": kind, "topic": "#", "allow": False, "priority": 0} for kind in _DENY_KINDS]
    role = _quarantine_role(device_id)
    return [
        {"command": "createRole", "rolename": role, "acls": acls},
        {"command": "createClient", "username": device_id, "roles": [{"rolename": role}]},
    ]


def release_commands(device_id: str) -> list[dict[str, object]]:
    """Commands that end a quarantine (deleting the client also disconnects the device)."""
    if not DEVICE_ID_PATTERN.fullmatch(device_id):
        raise Config(f"{device_id[:70]!r} is not a device id", code="broker.quarantine.id")
    return [
        {"command": "deleteClient", "username": device_id},
        {"command": "deleteRole", "rolename": _quarantine_role(device_id)},
    ]


def render_dynsec_state(password: str) -> str:
    """The dynamic-security state: only the admin; every default access denied.

    With every default denied, a client the plugin does not know (every device and
    service) gets ``defer`` from the plugin and the ACL file decides.
    """
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _PBKDF2_ITERATIONS)
    acls = [
        {"acltype": kind, "topic": CONTROL_TOPIC_FILTER, "allow": True, "priority": 0}
        for kind in (
            "publishClientSend",
            "publishClientReceive",
            "subscribePattern",
            "unsubscribePattern",
        )
    ]
    state = {
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": False,
        },
        "clients": [
            {
                "username": ADMIN_USERNAME,
                "textName": "TrustFleet broker administration",
                "password": base64.b64encode(digest).decode(),
                "salt": base64.b64encode(salt).decode(),
                "iterations": _PBKDF2_ITERATIONS,
                "roles": [{"rolename": _ADMIN_ROLE}],
            }
        ],
        "groups": [],
        "roles": [{"rolename": _ADMIN_ROLE, "acls": acls}],
    }
    return json.dumps(state, indent=2) + "\n"
