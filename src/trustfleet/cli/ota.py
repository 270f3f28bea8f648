"""``trustfleet ota …``: the TUF update repository (ceremonies, rotations, timestamp)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer
from rich.table import Table

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
def init(home: HomeOpt, json_out: JsonOpt = False) -> None:
    """Create the OTA tokens, keys and TUF repository (for a home made before OTA)."""
    from trustfleet.services.ota import init_repository

    doc = init_repository(load_server_settings(home), now=now())
    _report(doc, json_out=json_out, title="[green]✓[/] OTA repository created")


@app.command("status")
def status(home: HomeOpt, json_out: JsonOpt = False) -> None:
    """Show roles, versions, expiries, key ids and thresholds."""
    from trustfleet.services.ota import repository_status

    _report(_on_runtime(home, repository_status), json_out=json_out)


@app.command("rotate-root")
def rotate_root(home: HomeOpt, json_out: JsonOpt = False) -> None:
    """Root key ceremony: a new key in each root token, a new root signed by old and new keys."""
    from trustfleet.services.ota import rotate_root as do_rotate

    doc = _on_runtime(home, lambda rt: do_rotate(rt, now=now()))
    version = doc["roles"]["root"]["version"]
    _report(doc, json_out=json_out, title=f"[green]✓[/] root rotated: version {version}")


@app.command("rotate-online")
def rotate_online(home: HomeOpt, json_out: JsonOpt = False) -> None:
    """Replace the snapshot and timestamp keys (needs the root tokens)."""
    from trustfleet.services.ota import rotate_online_keys

    doc = _on_runtime(home, lambda rt: rotate_online_keys(rt, now=now()))
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
