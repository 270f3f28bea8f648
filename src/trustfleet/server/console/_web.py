"""The console's request pipeline: session, permission, CSRF, one service call, a rendered page.

Every console route is a plain function ``handler(ctx) -> Response`` wrapped by
:meth:`Console.page`, which (in a worker thread, since the services block on the store):

1. resolves the session cookie with ``services.auth.session_view`` (none, unknown or expired:
   back to the login page), and sends a session that has not finished its login steps to the
   step it is at;
2. checks the route's one permission with :func:`trustfleet.rbac.allowed` (else a 403 page);
3. for a POST, checks the Origin and the CSRF token (form field or ``X-CSRF-Token`` header);
4. runs the handler inside ``event_context`` (the operator and the request's origin name every
   event the service appends), and translates a :class:`TrustFleetError` into an error page
   once, here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from trustfleet import rbac
from trustfleet.audit.context import event_context
from trustfleet.errors import (
    InvalidInput,
    PermissionDenied,
    TrustFleetError,
    Unauthenticated,
    status_for,
)
from trustfleet.server.console._charts import bar_chart, line_chart
from trustfleet.server.console._session import (
    CSRF_FIELD,
    CSRF_HEADER,
    check_origin,
    clear_cookie,
    public_origin,
    session_secret,
)
from trustfleet.services.auth import SessionView, check_csrf, session_view
from trustfleet.services.operators import get_operator
from trustfleet.services.runtime import Runtime

__all__ = ["Clock", "Console", "Ctx", "Handler", "Stage", "see_other"]

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Stage = Literal["password", "mfa-enroll", "full"]
TEMPLATES: Final = Path(__file__).with_name("templates")
_MAX_BODY_BYTES: Final = 64 * 1024
_MAX_FIELDS: Final = 64
_STEP_PAGES: Final[dict[str, str]] = {
    "password": "/console/mfa",
    "mfa-enroll": "/console/mfa/enroll",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Ctx:
    """What a handler gets: the request's parts, its session and the time."""

    console: Console
    path: Mapping[str, str]
    query: Mapping[str, str]
    form: Mapping[str, str]
    body: str
    view: SessionView | None
    secret: str | None
    now: datetime
    origin: str = field(default="unknown")
    """The request for the events it appends: ``https POST /console/login from ip:port``."""

    @property
    def rt(self) -> Runtime:
        return self.console.rt

    @property
    def session(self) -> SessionView:
        """The session (every handler but the login page's has one)."""
        if self.view is None:
            raise Unauthenticated("no session", code="auth.session")
        return self.view

    def render(self, template: str, *, status_code: int = 200, **values: Any) -> HTMLResponse:
        return self.console.render(template, view=self.view, status_code=status_code, **values)


Handler = Callable[[Ctx], Response]


class Console:
    """The console's shared parts: the runtime, the clock, the templates."""

    def __init__(self, rt: Runtime, *, clock: Clock) -> None:
        self.rt = rt
        self.clock = clock
        self.origin = public_origin(rt.settings.api.public_url)
        self.env = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["when"] = _when
        self.env.globals["bar_chart"] = bar_chart
        self.env.globals["line_chart"] = line_chart
        self.env.globals["with_query"] = _query

    def render(
        self, template: str, *, view: SessionView | None, status_code: int = 200, **values: Any
    ) -> HTMLResponse:
        """``template`` with ``values``, the session and what its role may do."""
        role = view.principal.role if view and view.stage == "full" else ""
        html = self.env.get_template(template).render(
            view=view,
            csrf=view.csrf_token if view else "",
            can=lambda permission: rbac.allowed(role, permission),
            status_code=status_code,
            **values,
        )
        return HTMLResponse(html, status_code=status_code)

    def page(
        self,
        permission: rbac.Permission | None,
        *,
        stages: frozenset[str] = frozenset({"full"}),
        public: bool = False,
        password_pending: bool = False,
    ) -> Callable[[Handler], Callable[[Request], Any]]:
        """Wrap ``handler`` as a route: session, ``permission``, CSRF on POST, errors as pages.

        Args:
            permission: What the session's role must hold (None: any signed-in operator).
            stages: The login stages the page serves (other stages go to their step's page).
            public: No session needed (the login page).
            password_pending: Open before a one-time password is changed (every other page
                sends such an operator to the password page).
        """

        def wrap(handler: Handler) -> Callable[[Request], Any]:
            async def endpoint(request: Request) -> Response:
                try:
                    form, body = await _read(request, self.origin)
                    ctx = Ctx(
                        console=self,
                        path={k: str(v) for k, v in request.path_params.items()},
                        query=dict(request.query_params),
                        form=form,
                        body=body,
                        view=None,
                        secret=session_secret(request),
                        now=self.clock(),
                        origin=f"https {request.method} {request.url.path} from {_client(request)}",
                    )
                    rule = _Rule(
                        permission=permission,
                        stages=stages,
                        public=public,
                        password_pending=password_pending,
                    )
                    return await run_in_threadpool(self._run, handler, ctx, request, rule)
                except TrustFleetError as exc:
                    return self.error(request, exc)

            return endpoint

        return wrap

    def _session(self, ctx: Ctx, rule: _Rule) -> SessionView | None:
        """The session a request runs in (None for a public page).

        Raises:
            Unauthenticated: No session, or an ended one (code ``auth.session``).
        """
        if rule.public:
            return None
        if ctx.secret is None:
            raise Unauthenticated("no session", code="auth.session")
        return session_view(self.rt, ctx.secret, now=ctx.now)

    def _gate(self, view: SessionView, ctx: Ctx, request: Request, rule: _Rule) -> Response | None:
        """Where to send a session that may not see the page yet, or None to serve it.

        Raises:
            PermissionDenied: The role lacks the page's permission, or a POST's CSRF token is
                missing or wrong.
        """
        if view.stage not in rule.stages:
            return see_other(_STEP_PAGES.get(view.stage, "/console/"))
        if rule.permission and not rbac.allowed(view.principal.role, rule.permission):
            raise PermissionDenied(
                f"your role ({view.principal.role}) may not {rule.permission}",
                code="auth.forbidden",
            )
        if request.method == "POST":
            check_csrf(view, ctx.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER))
        pending = view.stage == "full" and not rule.password_pending
        if pending and get_operator(self.rt, view.principal.login).must_change_password:
            return see_other("/console/account/password")
        return None

    def _run(self, handler: Handler, ctx: Ctx, request: Request, rule: _Rule) -> Response:
        view = None
        try:
            view = self._session(ctx, rule)
            elsewhere = self._gate(view, ctx, request, rule) if view else None
            if elsewhere is not None:
                return elsewhere
            operator = view.principal.actor if view else None
            with event_context(origin=ctx.origin, operator=operator):
                return handler(_with_view(ctx, view))
        except TrustFleetError as exc:
            return self.error(request, exc, view=view)

    def error(
        self, request: Request, exc: TrustFleetError, *, view: SessionView | None = None
    ) -> Response:
        """The one translation of an error into a response: a page, JSON, or the login page."""
        if isinstance(exc, Unauthenticated) and exc.code == "auth.session":
            response: Response = see_other("/console/login")
            clear_cookie(response)
            return response
        status = status_for(exc)
        if status >= 500:
            logger.error("console: %s", exc.message)
        if request.url.path.endswith(".json") or request.headers.get(CSRF_HEADER):
            doc = {"detail": exc.message, "code": exc.code or exc.category}
            return JSONResponse(doc, status_code=status)
        return self.render("error.html", view=view, status_code=status, error=exc)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Rule:
    permission: rbac.Permission | None
    stages: frozenset[str]
    public: bool
    password_pending: bool  # open while a one-time password is still to be changed


def _with_view(ctx: Ctx, view: SessionView | None) -> Ctx:
    values = {name: getattr(ctx, name) for name in Ctx.__slots__}
    values["view"] = view
    return Ctx(**values)


async def _read(request: Request, origin: str) -> tuple[dict[str, str], str]:
    """A POST's form fields or JSON text (bounded); the Origin checked first."""
    if request.method != "POST":
        return {}, ""
    check_origin(request, origin)
    kind = request.headers.get("content-type", "")
    if kind.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form(max_files=0, max_fields=_MAX_FIELDS)
        return {k: v for k, v in form.items() if isinstance(v, str)}, ""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_BODY_BYTES:
            raise InvalidInput("the request body is too large", code="console.body.size")
    return {}, body.decode("utf-8", errors="replace")


def _client(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "unknown"


def see_other(location: str) -> Response:
    """A 303 to a console path (never built from the request's Host)."""
    return RedirectResponse(location, status_code=303)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "—"


def _query(values: Mapping[str, Any], **changes: Any) -> str:
    """``values`` with ``changes`` as a query string (empty values dropped)."""
    merged = {**values, **changes}
    return urlencode({k: v for k, v in merged.items() if v not in (None, "")})
