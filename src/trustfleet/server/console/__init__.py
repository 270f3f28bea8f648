"""The web console: server-rendered pages over the services, at ``/console``.

:func:`console_routes` returns the routes that ``server/app.py`` mounts at ``/console``.
Every page names one permission of :mod:`trustfleet.rbac` (checked in one place,
``_web.Console.page``), renders a Jinja2 template with autoescaping, and posts forms with the
session's CSRF token. The only script is ``static/console.js`` (passkeys, confirmations, a
campaign's live progress); the content security policy (``server/_headers.py``) forbids
inline scripts and styles. docs/console.md describes the pages.
"""

from __future__ import annotations

from pathlib import Path

from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from trustfleet.server.console._alerts import alert_routes
from trustfleet.server.console._devices import device_routes
from trustfleet.server.console._login import login_routes
from trustfleet.server.console._overview import overview_routes
from trustfleet.server.console._rollouts import rollout_routes
from trustfleet.server.console._security import security_routes
from trustfleet.server.console._users import user_routes
from trustfleet.server.console._web import Clock, Console
from trustfleet.services.runtime import Runtime

__all__ = ["STATIC", "console_routes"]

STATIC = Path(__file__).with_name("static")


def console_routes(rt: Runtime, *, clock: Clock) -> list[BaseRoute]:
    """The console's routes, relative to its mount point (``/console``)."""
    console = Console(rt, clock=clock)
    return [
        *login_routes(console),
        *overview_routes(console),
        *device_routes(console),
        *rollout_routes(console),
        *security_routes(console),
        *alert_routes(console),
        *user_routes(console),
        Mount("/static", StaticFiles(directory=STATIC), name="console-static"),
    ]
