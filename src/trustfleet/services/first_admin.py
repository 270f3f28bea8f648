"""A new server home with its first operator: ``admin`` and the password it logs in with once.

``trustfleet server init`` (and the simulation harness) call :func:`create_server_home`; it is
:func:`~trustfleet.services.home.init_server_home` with the first admin's password chosen
before anything is made: the one given (``--admin-password-file``) or a generated one-time
password, returned to be shown once. Either way the admin must change it at the first login.
The offline tokens' PINs are made the same way (unless ``options.pins_out`` is given) and
returned to be shown once, one per custodian.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from trustfleet.services._offline import new_offline_pins
from trustfleet.services._passwords import check_new_password, generate_password
from trustfleet.services.home import HomeOptions, init_server_home
from trustfleet.settings import OtaSettings, ServerSettings

__all__ = ["NewHome", "create_server_home"]


@dataclass(frozen=True)
class NewHome:
    """A new server home and the password of its first operator (``admin``)."""

    settings: ServerSettings
    admin_password: str | None = dataclasses.field(repr=False)
    """The generated one-time password (None when the caller gave the password)."""
    offline_pins: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)
    """The offline tokens' PINs and SO-PINs by file name (``tf-root.pin``…), to be shown once
    and handed to their custodians; empty when they were written to ``options.pins_out``."""


def create_server_home(home: Path, *, options: HomeOptions, now: datetime) -> NewHome:
    """Create a server home (as :func:`~trustfleet.services.home.init_server_home`) whose first
    operator ``admin`` has ``options.admin_password`` or a new one-time password.

    Raises:
        InvalidInput: The given password is too short or too long; or as ``init_server_home``.
        Conflict: As ``init_server_home``.
    """
    given = options.admin_password
    if given is not None:
        check_new_password(given)
    password = given if given is not None else generate_password()
    pins = options.offline_pins
    if pins is None and options.pins_out is None:
        pins = new_offline_pins(OtaSettings().root_keys)
    made = dataclasses.replace(options, admin_password=password, offline_pins=pins)
    settings = init_server_home(home, options=made, now=now)
    return NewHome(
        settings=settings,
        admin_password=None if given is not None else password,
        offline_pins={} if options.pins_out is not None else dict(pins or {}),
    )
