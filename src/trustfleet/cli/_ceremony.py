"""What every ceremony command takes: the offline folder and the custodians' PINs.

``--offline DIR`` (default ``[lifecycle] offline_dir``) and ``--pin-file TOKEN=PATH``
(repeatable, for automation); without PIN files each custodian types the PIN of their token at
a prompt that does not echo (empty: that custodian is absent). Without a terminal and without
PIN files the command fails with one line: nothing moves the offline root without a human
(docs/lifecycle.md, "Offline root and ceremonies").
"""

from __future__ import annotations

import getpass
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final

import typer

from trustfleet.errors import InvalidInput

if TYPE_CHECKING:
    from trustfleet.services.ceremony import CeremonyKeys
    from trustfleet.settings import ServerSettings

__all__ = [
    "MAX_PIN_CHARS",
    "OfflineOpt",
    "PinFileOpt",
    "ceremony_keys",
    "offline_folder",
    "print_offline_pins",
]

MAX_PIN_CHARS: Final = 256
"""A typed PIN longer than this is refused."""

OfflineOpt = Annotated[
    Path | None,
    typer.Option(
        "--offline",
        help="The custodians' offline folder (default: [lifecycle] offline_dir of the home).",
    ),
]
PinFileOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--pin-file",
        metavar="TOKEN=PATH",
        help="A custodian's PIN from a file (mode 0600), for automation; repeatable. Without "
        "it each custodian types the PIN at a prompt.",
    ),
]


def ceremony_keys(
    settings: ServerSettings,
    *,
    offline: Path | None,
    pin_files: Sequence[str] | None,
    tokens: Sequence[str],
) -> CeremonyKeys:
    """The offline folder and the PINs of the custodians present for a ceremony.

    Args:
        settings: The home's settings (for the default offline folder).
        offline: ``--offline``.
        pin_files: ``--pin-file`` values.
        tokens: The tokens that may take part (their custodians are asked in this order).

    Raises:
        InvalidInput: No offline folder known, a malformed ``--pin-file``, or no PINs and no
            terminal to ask them
            (codes ``ceremony.offline.missing``, ``ceremony.pin_file``, ``ceremony.pin.missing``).
        Config: A PIN file is missing, open to others or too large.
        Unavailable: The offline folder is not there (code ``ceremony.offline.missing``).
    """
    from trustfleet.services.ceremony import (  # keeps --help fast
        CeremonyKeys,
        find_offline_folder,
        parse_pin_files,
        read_pin_file,
    )

    # A wrong PIN is one error line naming the token; keystore's log warning would repeat it.
    logging.getLogger("trustfleet.keystore").setLevel(logging.ERROR)
    files = parse_pin_files(pin_files or [])
    folder = find_offline_folder(offline_folder(settings, offline))  # before anyone types a PIN
    # PIN files of tokens that take no part are not read (one set of files serves every ceremony)
    pins = {t: read_pin_file(path) for t, path in files.items() if t in tokens}
    if not files:
        pins = _ask(tokens)
    return CeremonyKeys(offline=folder, pins=pins)


def offline_folder(settings: ServerSettings, offline: Path | None) -> Path:
    """``--offline``, else ``[lifecycle] offline_dir``.

    Raises:
        InvalidInput: Neither is set (code ``ceremony.offline.missing``).
    """
    if offline is not None:
        return offline
    if settings.lifecycle.offline_dir:
        return settings.path(settings.lifecycle.offline_dir)
    raise InvalidInput(
        "no offline folder given",
        hint="bring the custodians' offline folder and pass --offline DIR",
        code="ceremony.offline.missing",
    )


def _ask(tokens: Sequence[str]) -> dict[str, str]:
    """Each custodian types a PIN (not echoed); empty: absent."""
    if not sys.stdin.isatty():
        raise InvalidInput(
            "this ceremony needs the custodians' PINs and there is no terminal to ask them",
            hint="run it on a terminal, or pass --pin-file TOKEN=PATH for each custodian present",
            code="ceremony.pin.missing",
        )
    pins: dict[str, str] = {}
    for token in tokens:
        pin = getpass.getpass(f"PIN of token {token} (its custodian types it; empty: absent): ")
        if len(pin) > MAX_PIN_CHARS:
            raise InvalidInput(
                f"the PIN typed for {token} is longer than {MAX_PIN_CHARS} characters",
                code="ceremony.pin.invalid",
            )
        if pin:
            pins[token] = pin
    return pins


def print_offline_pins(pins: Mapping[str, str]) -> None:
    """Show the offline tokens' new PINs once, one row per custodian token."""
    from rich.table import Table

    from trustfleet.cli._common import console

    tokens = sorted({name.rsplit(".", 1)[0] for name in pins})
    table = Table("token", "PIN", "SO-PIN", title="offline tokens: give each row to its custodian")
    for token in tokens:
        table.add_row(token, pins.get(f"{token}.pin", "-"), pins.get(f"{token}.so-pin", "-"))
    console.print(table)
    console.print(
        "  these PINs are shown once and kept nowhere: no ceremony works without them",
        highlight=False,
    )
