"""The OpenAPI 3.1 document as served: errors documented as problem details.

FastAPI documents a ``422`` validation error on every operation; this API answers ``400``
(``api.invalid``) instead, and every error as ``application/problem+json``. The document is
built once, then kept.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from trustfleet.server.api._problems import PROBLEM_MEDIA_TYPE

__all__ = ["install_openapi"]

_PROBLEM_SCHEMA: Final = {
    "title": "Problem",
    "description": "RFC 9457 problem details; code is the stable TrustFleet error code.",
    "type": "object",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "hint": {"type": "string"},
    },
}
_ERRORS: Final = {
    "400": "Invalid input (code api.invalid, api.unknown_parameter or the service's code).",
    "401": "No credential, or an invalid or expired one.",
    "403": "The caller's role does not hold the permission (auth.forbidden) or CSRF failed.",
    "default": "Another error, as problem details.",
}
_SECURITY: Final = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "An API token tf_<id>_<secret>."},
    "session": {"type": "apiKey", "in": "cookie", "name": "__Host-tf_session"},
}
_UNUSED: Final = ("HTTPValidationError", "ValidationError")


def _problem_response(description: str) -> dict[str, Any]:
    ref = {"$ref": "#/components/schemas/Problem"}
    return {"description": description, "content": {PROBLEM_MEDIA_TYPE: {"schema": ref}}}


def _patch(document: dict[str, Any]) -> dict[str, Any]:
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for status, description in _ERRORS.items():
                responses.setdefault(status, _problem_response(description))
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name in _UNUSED:
        schemas.pop(name, None)
    schemas["Problem"] = _PROBLEM_SCHEMA
    document["components"]["securitySchemes"] = _SECURITY
    document["security"] = [{"bearer": []}, {"session": []}]
    return document


def install_openapi(api: FastAPI) -> None:
    """Serve ``api``'s document with problem details for its errors."""

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            document = get_openapi(
                title=api.title, version=api.version, openapi_version=api.openapi_version,
                description=api.description, routes=api.routes, servers=api.servers,
            )  # fmt: skip
            api.openapi_schema = _patch(document)
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override
