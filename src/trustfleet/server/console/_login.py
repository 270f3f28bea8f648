"""Login and account pages: password, then TOTP or a passkey, TOTP enrollment, the one-time
password's change, the account page (register a passkey, log out).

Each login step answers with a new session cookie (``services.auth`` makes a new secret at
every stage change) and a 303 to the next step. The passkey ceremonies run in the browser
(static/console.js): it fetches the options as JSON, calls ``navigator.credentials``, and
posts the credential back as JSON with the CSRF header.
"""

from __future__ import annotations

from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from trustfleet.errors import InvalidInput, Unauthenticated
from trustfleet.server.console._session import clear_cookie, set_cookie
from trustfleet.server.console._web import Console, Ctx, see_other
from trustfleet.services import auth
from trustfleet.services.auth import LoginStep
from trustfleet.services.operators import change_password, get_operator

__all__ = ["login_routes"]

_STEPS = frozenset({"password"})
_ENROLL = frozenset({"mfa-enroll"})
_ANY = frozenset({"password", "mfa-enroll", "full"})
_MAX_FIELD_CHARS = 1024
_MIN_PASSWORD_CHARS = 12


def _field(ctx: Ctx, name: str) -> str:
    value = ctx.form.get(name, "")
    if not value or len(value) > _MAX_FIELD_CHARS:
        raise InvalidInput(f"'{name}' is missing or too long", code="console.form")
    return value


def _next(ctx: Ctx, step: LoginStep) -> Response:
    """The page after a login step, with the step's new cookie."""
    stage = step.view.stage
    if stage == "full":
        operator = get_operator(ctx.rt, step.view.principal.login)
        where = "/console/account/password" if operator.must_change_password else "/console/"
    else:
        where = {"password": "/console/mfa", "mfa-enroll": "/console/mfa/enroll"}[stage]
    response = see_other(where)
    set_cookie(response, step.session_secret)
    return response


def _login_form(ctx: Ctx) -> Response:
    return ctx.render("login.html")


def _login(ctx: Ctx) -> Response:
    try:
        step = auth.login_password(
            ctx.rt,
            login=_field(ctx, "login"),
            password=_field(ctx, "password"),
            origin=ctx.origin,
            now=ctx.now,
        )
    except Unauthenticated as exc:
        return ctx.render("login.html", status_code=401, failed=exc.message)
    return _next(ctx, step)


def _mfa_form(ctx: Ctx) -> Response:
    return ctx.render("mfa.html")


def _mfa_totp(ctx: Ctx) -> Response:
    secret = ctx.secret or ""
    try:
        step = auth.verify_totp(ctx.rt, secret, _field(ctx, "code"), now=ctx.now)
    except Unauthenticated as exc:
        if exc.code == "auth.session":
            raise
        return ctx.render("mfa.html", status_code=401, failed=exc.message)
    return _next(ctx, step)


def _passkey_login_options(ctx: Ctx) -> Response:
    options = auth.passkey_login_options(ctx.rt, ctx.secret or "", now=ctx.now)
    return Response(options, media_type="application/json")


def _passkey_login(ctx: Ctx) -> Response:
    step = auth.finish_passkey_login(ctx.rt, ctx.secret or "", ctx.body, now=ctx.now)
    response = _next(ctx, step)
    answer = JSONResponse({"next": response.headers["location"]})
    set_cookie(answer, step.session_secret)
    return answer


def _enroll_form(ctx: Ctx) -> Response:
    secret, uri = auth.begin_totp_enrollment(ctx.rt, ctx.secret or "", now=ctx.now)
    return ctx.render("enroll.html", totp_secret=secret, totp_uri=uri)


def _enroll(ctx: Ctx) -> Response:
    secret = ctx.secret or ""
    step = auth.confirm_totp_enrollment(ctx.rt, secret, _field(ctx, "code"), now=ctx.now)
    return _next(ctx, step)


def _account(ctx: Ctx) -> Response:
    operator = get_operator(ctx.rt, ctx.session.principal.login)
    return ctx.render("account.html", operator=operator, done=ctx.query.get("done"))


def _password(ctx: Ctx) -> Response:
    if ctx.form.get("new") != ctx.form.get("again"):
        return ctx.render("password.html", status_code=400, failed="the two passwords differ")
    change_password(
        ctx.rt,
        login=ctx.session.principal.login,
        old=_field(ctx, "old"),
        new=_field(ctx, "new"),
        now=ctx.now,
    )
    return see_other("/console/account?done=password")


def _password_form(ctx: Ctx) -> Response:
    return ctx.render("password.html", min_chars=_MIN_PASSWORD_CHARS)


def _passkey_options(ctx: Ctx) -> Response:
    options = auth.passkey_registration_options(ctx.rt, ctx.secret or "", now=ctx.now)
    return Response(options, media_type="application/json")


def _passkey_add(ctx: Ctx) -> Response:
    name = ctx.query.get("name", "passkey")[:64] or "passkey"
    auth.finish_passkey_registration(ctx.rt, ctx.secret or "", ctx.body, name=name, now=ctx.now)
    return JSONResponse({"next": "/console/account?done=passkey"})


def _logout(ctx: Ctx) -> Response:
    auth.logout(ctx.rt, ctx.secret or "", now=ctx.now)
    response = see_other("/console/login")
    clear_cookie(response)
    return response


def login_routes(console: Console) -> list[BaseRoute]:
    """The login steps, the account page and logout."""
    page = console.page

    return [
        Route("/login", page(None, public=True)(_login_form), methods=["GET"]),
        Route("/login", page(None, public=True)(_login), methods=["POST"]),
        Route("/mfa", page(None, stages=_STEPS)(_mfa_form), methods=["GET"]),
        Route("/mfa", page(None, stages=_STEPS)(_mfa_totp), methods=["POST"]),
        Route(
            "/mfa/passkey/options.json",
            page(None, stages=_STEPS)(_passkey_login_options),
            methods=["POST"],
        ),
        Route("/mfa/passkey.json", page(None, stages=_STEPS)(_passkey_login), methods=["POST"]),
        Route("/mfa/enroll", page(None, stages=_ENROLL)(_enroll_form), methods=["GET"]),
        Route("/mfa/enroll", page(None, stages=_ENROLL)(_enroll), methods=["POST"]),
        Route("/account", page(None)(_account), methods=["GET"]),
        Route(
            "/account/password", page(None, password_pending=True)(_password_form), methods=["GET"]
        ),
        Route("/account/password", page(None, password_pending=True)(_password), methods=["POST"]),
        Route("/account/passkey/options.json", page(None)(_passkey_options), methods=["POST"]),
        Route("/account/passkey.json", page(None)(_passkey_add), methods=["POST"]),
        Route(
            "/logout",
            page(None, stages=_ANY, password_pending=True)(_logout),
            methods=["POST"],
        ),
    ]
