"""``trustfleet ota …``: the TUF update repository (ceremonies, rotations, timestamp)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from trustfleet.cli._ceremony import (
    OfflineOpt,
    PinFileOpt,
    ceremony_keys,
    offline_folder,
    print_offline_pins,
)
from trustfleet.cli._common import HomeOpt, JsonOpt, command_runtime, console, emit_json, now
from trustfleet.settings import load_server_settings

__all__ = ["app"]

app = typer.Typer(
    help="The TUF update repository: key ceremonies, rotations, timestamp refresh.",
    no_args_is_help=True,
)


def _print_status(doc: dict[str, Any], *, title: str | None = None) -> None:
    if title:
        console.print(title)
    console.print(f"repository: {doc['repo_dir']}  targets: {doc['targets']}")
    table = Table("role", "version", "expires", "threshold", "key ids")
    for name, role in doc["roles"].items():
        keyids = ", ".join(k[:16] for k in role["keyids"])
        table.add_row(name, str(role["version"]), role["expires"], str(role["threshold"]), keyids)
    console.print(table)


def _on_runtime(home: Any, action: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """Open the home's runtime, run ``action`` on it, close it (a refusal is audited)."""
    with command_runtime(home) as rt:
        return action(rt)


def _report(doc: dict[str, Any], *, json_out: bool, title: str | None = None) -> None:
    if json_out:
        emit_json(doc)
    else:
        _print_status(doc, title=title)


@app.command("init")
def init(
    home: HomeOpt,
    offline: OfflineOpt = None,
    pins_out: Annotated[
        Path | None,
        typer.Option("--pins-out", help="Write the root tokens' PINs here (default: shown once)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Create the OTA tokens, keys and TUF repository (for a home made before OTA); the TUF
    root tokens go to the offline folder (made if new), each with its own PIN."""
    from trustfleet.services.ota import init_offline_repository

    settings = load_server_settings(home)
    folder = offline_folder(settings, offline)
    doc, pins = init_offline_repository(settings, offline=folder, pins_out=pins_out, now=now())
    if pins and json_out:
        doc = {**doc, "offline_pins": pins}
    _report(doc, json_out=json_out, title="[green]✓[/] OTA repository created")
    if pins and not json_out:
        print_offline_pins(pins)


@app.command("status")
def status(home: HomeOpt, json_out: JsonOpt = False) -> None:
    """Show roles, versions, expiries, key ids and thresholds."""
    from trustfleet.services.ota import repository_status

    _report(_on_runtime(home, repository_status), json_out=json_out)


def _ceremony(rt: Any, offline: Path | None, pin_file: list[str] | None) -> Any:
    """The custodians' keys for a TUF root ceremony (tokens tf-tuf-root-1..N)."""
    from trustfleet.services.ota import root_token

    tokens = [root_token(i) for i in range(1, rt.settings.ota.root_keys + 1)]
    return ceremony_keys(rt.settings, offline=offline, pin_files=pin_file, tokens=tokens)


@app.command("rotate-root")
def rotate_root(
    home: HomeOpt,
    offline: OfflineOpt = None,
    pin_file: PinFileOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Root key ceremony (at least the root threshold of custodians): a new key in each present
    custodian's token, root N+1 signed by old and new keys; an absent custodian's key stays."""
    from trustfleet.services.ota import rotate_root as do_rotate

    doc = _on_runtime(home, lambda rt: do_rotate(rt, _ceremony(rt, offline, pin_file), now=now()))
    version = doc["roles"]["root"]["version"]
    _report(doc, json_out=json_out, title=f"[green]✓[/] root rotated: version {version}")


@app.command("rotate-online")
def rotate_online(
    home: HomeOpt,
    offline: OfflineOpt = None,
    pin_file: PinFileOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Ceremony: replace the snapshot and timestamp keys through root N+1 (root threshold)."""
    from trustfleet.services.ota import rotate_online_keys

    doc = _on_runtime(
        home, lambda rt: rotate_online_keys(rt, _ceremony(rt, offline, pin_file), now=now())
    )
    _report(doc, json_out=json_out, title="[green]✓[/] snapshot and timestamp keys rotated")


@app.command("refresh-timestamp")
def refresh_timestamp(home: HomeOpt, json_out: JsonOpt = False) -> None:
    """Re-sign the timestamp now (``server run`` does it automatically before expiry)."""
    from trustfleet.services.ota import refresh_timestamp_if_due, repository_status

    def refresh(rt: Any) -> dict[str, Any]:
        refresh_timestamp_if_due(rt, now=now(), force=True)
        return repository_status(rt)

    doc = _on_runtime(home, refresh)
    if json_out:
        emit_json(doc)
        return
    role = doc["roles"]["timestamp"]
    console.print(f"[green]✓[/] timestamp version {role['version']}, expires {role['expires']}")
