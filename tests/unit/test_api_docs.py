"""docs/api.md says what ``trustfleet.rbac`` and the served routes say (matrix and resources);
the API's enums are the code's."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

from trustfleet import rbac
from trustfleet.pki.crl import REASONS
from trustfleet.server.api import api_routes, schemas
from trustfleet.server.api._auth import permission_of
from trustfleet.store import DEVICE_STATES

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")


def test_the_permission_matrix_in_the_doc_is_rbac_s() -> None:
    header = re.search(r"^\| permission \|(.*)\|$", DOC, flags=re.MULTILINE)
    assert header is not None, "docs/api.md has the matrix (a '| permission |' header row)"
    roles = [cell.strip().strip("`") for cell in header.group(1).split("|")]
    assert tuple(roles) == rbac.ROLES
    rows = re.findall(r"^\| `([a-z]+\.[a-z]+)` \|((?: [✓·] \|)+)$", DOC, flags=re.MULTILINE)
    assert [permission for permission, _ in rows] == list(rbac.PERMISSIONS)
    for permission, cells in rows:
        marks = [cell.strip() for cell in cells.split("|") if cell.strip()]
        held = {role for role in rbac.ROLES if permission in rbac.permissions_of(role)}
        expected = ["✓" if role in held else "·" for role in rbac.ROLES]
        assert marks == expected, permission


def test_the_resources_in_the_doc_are_the_served_routes() -> None:
    rows = re.findall(r"^\| `([A-Z]+)` \| `([^`]+)` \| `([a-z.]+)` \|", DOC, flags=re.MULTILINE)
    served = [
        (method, route.path, (route.openapi_extra or {}).get("x-permission"))
        for route in api_routes()
        for method in sorted(route.methods)
    ]
    assert rows == served


def test_every_route_checks_the_permission_it_declares() -> None:
    for route in api_routes():
        declared = (route.openapi_extra or {}).get("x-permission")
        assert declared in rbac.PERMISSIONS, route.path
        assert permission_of(route) == declared, route.path


def test_the_api_s_enums_are_the_code_s() -> None:
    assert get_args(schemas.OperatorRole) == rbac.OPERATOR_ROLES
    assert get_args(schemas.DeviceState) == DEVICE_STATES
    assert set(get_args(schemas.RevocationReason)) == set(REASONS)
