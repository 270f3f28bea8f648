"""Roles and permissions of the operator plane: the one permission matrix (docs/api.md).

Pure data, usable everywhere (services check roles, the API and the console enforce them).
Every route of the management API and the console names one permission; a principal may call
it when its role holds that permission. The matrix test
(``tests/integration/api/test_permission_matrix.py``) calls every route with a credential of
every role and expects exactly what :func:`allowed` says, so a new route without a rule, or a
rule the code does not enforce, fails it.

A role that holds any permission that changes something (:data:`MUTATING`) must complete a
second factor (TOTP or a passkey) before a browser session is usable; API tokens of such a
role are created only by an operator who did.
"""

from __future__ import annotations

from typing import Final, Literal

__all__ = [
    "MFA_REQUIRED_ROLES",
    "MUTATING",
    "OPERATOR_ROLES",
    "PERMISSIONS",
    "ROLES",
    "ROLE_DESCRIPTIONS",
    "TOKEN_ONLY_ROLES",
    "Permission",
    "Role",
    "allowed",
    "check_role",
    "permissions_of",
]

Role = Literal[
    "admin", "security-officer", "release-manager", "fleet-operator", "factory", "auditor",
    "metrics",
]  # fmt: skip

Permission = Literal[
    # reads
    "fleet.read",  # overview, devices, certificates, telemetry, device events, commands
    "attestation.read",  # verdicts with findings, quarantines
    "releases.read",
    "campaigns.read",
    "events.read",  # the security event log, every subject
    "audit.read",  # the audit log (checkpoints, proofs)
    "users.read",  # operators and API tokens of everyone
    "metrics.read",  # /metrics
    "alerts.read",  # security alerts with their actions and notifications
    # changes
    "devices.command",  # ping, report
    "devices.revoke",
    "devices.quarantine",  # quarantine and lift
    "devices.attest",  # re-attest on demand
    "devices.provision",  # factory: register and sign IDevIDs
    "releases.publish",
    "campaigns.manage",  # create, pause, resume, abort, retry
    "users.manage",  # add, disable, reset MFA, change roles; other operators' tokens
    "tokens.own",  # create, list and revoke one's own API tokens
    "alerts.manage",  # acknowledge, resolve, suppress alerts; approve or reject their actions
]

PERMISSIONS: Final[tuple[Permission, ...]] = (
    "fleet.read", "attestation.read", "releases.read", "campaigns.read", "events.read",
    "audit.read", "users.read", "metrics.read", "alerts.read", "devices.command",
    "devices.revoke", "devices.quarantine", "devices.attest", "devices.provision",
    "releases.publish", "campaigns.manage", "users.manage", "tokens.own", "alerts.manage",
)  # fmt: skip

MUTATING: Final[frozenset[Permission]] = frozenset(
    {
        "devices.command", "devices.revoke", "devices.quarantine", "devices.attest",
        "devices.provision", "releases.publish", "campaigns.manage", "users.manage",
        "alerts.manage",
    }
)  # fmt: skip
"""Permissions that change the fleet or who may act on it."""

_READ_ALL: Final = frozenset[Permission](
    {"fleet.read", "attestation.read", "releases.read", "campaigns.read", "events.read"}
)

_MATRIX: Final[dict[Role, frozenset[Permission]]] = {
    "admin": frozenset(PERMISSIONS),
    "security-officer": _READ_ALL
    | {
        "audit.read",
        "devices.revoke",
        "devices.quarantine",
        "devices.attest",
        "tokens.own",
        "alerts.read",
        "alerts.manage",
    },
    "release-manager": _READ_ALL | {"releases.publish", "campaigns.manage", "tokens.own"},
    "fleet-operator": _READ_ALL | {"devices.command", "tokens.own", "alerts.read"},
    "factory": frozenset({"fleet.read", "devices.provision", "tokens.own"}),
    "auditor": _READ_ALL
    | {"audit.read", "users.read", "metrics.read", "tokens.own", "alerts.read"},
    "metrics": frozenset({"metrics.read"}),
}

ROLES: Final[tuple[Role, ...]] = tuple(_MATRIX)
TOKEN_ONLY_ROLES: Final[frozenset[Role]] = frozenset({"metrics"})
"""Roles an API token may carry but no operator account (a scraper's token)."""
OPERATOR_ROLES: Final[tuple[Role, ...]] = tuple(r for r in ROLES if r not in TOKEN_ONLY_ROLES)
MFA_REQUIRED_ROLES: Final[frozenset[Role]] = frozenset(r for r in ROLES if _MATRIX[r] & MUTATING)

ROLE_DESCRIPTIONS: Final[dict[Role, str]] = {
    "admin": "everything, including operators, roles and every token",
    "security-officer": (
        "revoke, quarantine and lift, re-attest; handle alerts and approve their actions; "
        "reads all and the audit log"
    ),
    "release-manager": "publish releases; create, pause, resume, abort and retry campaigns",
    "fleet-operator": "send commands (ping, report); reads the fleet and its alerts",
    "factory": "provisioning only (register devices, sign IDevIDs); reads the inventory",
    "auditor": (
        "read-only: the fleet, events, alerts, the audit log, operators and tokens, metrics"
    ),
    "metrics": "a scraper's token: /metrics only",
}


def check_role(role: str) -> Role:
    """``role`` as a :data:`Role`.

    Raises:
        ValueError: It is not a role.
    """
    for known in ROLES:
        if role == known:
            return known
    raise ValueError(f"unknown role {role[:40]!r}; roles: {', '.join(ROLES)}")


def permissions_of(role: str) -> frozenset[Permission]:
    """The permissions of ``role`` (none for an unknown role)."""
    for known, permissions in _MATRIX.items():
        if role == known:
            return permissions
    return frozenset()


def allowed(role: str, permission: Permission) -> bool:
    """Whether ``role`` holds ``permission``."""
    return permission in permissions_of(role)
