"""Errors of the management API as RFC 9457 problem details, translated here once.

A :class:`~trustfleet.errors.TrustFleetError` keeps its category's status
(:func:`~trustfleet.errors.status_for`) and its stable code, the one the CLI shows; FastAPI's
validation errors become ``400 api.invalid`` naming the fields; unknown routes and methods are
``404 api.not_found`` / ``405 api.method_not_allowed``. Anything else is a bug: it is logged
and answered with a bare 500 problem that says nothing of the cause.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Final, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from trustfleet.errors import TrustFleetError, status_for

__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "ProblemResponse",
    "error_problem",
    "install_problem_handlers",
    "problem",
]

logger = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE: Final = "application/problem+json"
_TYPE_BASE: Final = "https://trustfleet.dev/problems/"
_TITLES: Final = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 409: "Conflict", 413: "Content Too Large",
    415: "Unsupported Media Type", 500: "Internal Server Error", 503: "Service Unavailable",
}  # fmt: skip
_HTTP_CODES: Final = {400: "api.invalid", 404: "api.not_found", 405: "api.method_not_allowed"}
_MAX_FIELDS: Final = 10


class ProblemResponse(JSONResponse):
    """A JSON response with the problem details media type."""

    media_type = PROBLEM_MEDIA_TYPE


def problem(
    status: int,
    *,
    code: str,
    detail: str,
    hint: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """One problem details response (``type`` derived from ``code``)."""
    body: dict[str, Any] = {
        "type": _TYPE_BASE + code,
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
    }
    if hint:
        body["hint"] = hint
    return ProblemResponse(body, status_code=status, headers=headers)


def error_problem(exc: TrustFleetError) -> Response:
    """The problem of a TrustFleet error: its status, its code (else its category)."""
    status = status_for(exc)
    if status >= 500:
        logger.error("service error: %s", exc.message)
    headers = {"www-authenticate": "Bearer"} if status == 401 else None
    return problem(
        status,
        code=exc.code or exc.category,
        detail=exc.message,
        hint=exc.hint,
        headers=headers,
    )


def _fields(errors: Sequence[Any]) -> list[str]:
    names: list[str] = []
    for error in errors[:_MAX_FIELDS]:
        loc = [str(part) for part in error.get("loc", ())]
        names.append(".".join(loc) or "request")
    return names


async def _on_trustfleet(_request: Request, exc: Exception) -> Response:
    return error_problem(cast("TrustFleetError", exc))


async def _on_validation(_request: Request, exc: Exception) -> Response:
    names = _fields(cast("RequestValidationError", exc).errors())
    return problem(
        400, code="api.invalid", detail="invalid request: " + ", ".join(dict.fromkeys(names))
    )


async def _on_http(_request: Request, exc: Exception) -> Response:
    exc = cast("StarletteHTTPException", exc)
    code = _HTTP_CODES.get(exc.status_code, f"api.http_{exc.status_code}")
    detail = str(exc.detail) if exc.detail else _TITLES.get(exc.status_code, "error")
    headers = dict(exc.headers) if exc.headers else None
    return problem(exc.status_code, code=code, detail=detail, headers=headers)


async def _on_bug(request: Request, exc: Exception) -> Response:
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(500, code="api.internal", detail="internal error")


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` as a problem (the one translation boundary of the API)."""
    app.add_exception_handler(TrustFleetError, _on_trustfleet)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(Exception, _on_bug)
