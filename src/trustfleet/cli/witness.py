"""``trustfleet witness …``: run a transparency-log witness (c2sp.org/tlog-witness).

A witness is run by another party than the log's operator: its own home, token and key. It
cosigns a log's checkpoints only when they are consistent with the last one it cosigned, and
records a split view (two checkpoints of one size with different roots) as an alert.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from trustfleet.cli._common import INTERRUPTED_EXIT_CODE, JsonOpt, console, emit_json, now

__all__ = ["app"]

app = typer.Typer(help="Run a witness that cosigns audit-log checkpoints.", no_args_is_help=True)

WitnessHomeOpt = Annotated[
    Path,
    typer.Option(
        "--home",
        help="Witness home directory (made by 'trustfleet witness init').",
        envvar="TRUSTFLEET_WITNESS_HOME",
    ),
]


@app.command("init")
def init(
    home: WitnessHomeOpt,
    name: Annotated[
        str, typer.Option("--name", help="The witness's name, e.g. witness.example/w1.")
    ],
    log: Annotated[
        list[str],
        typer.Option("--log", help="A log's checkpoint verifier key (vkey; repeatable)."),
    ],
    dns: Annotated[
        list[str] | None,
        typer.Option("--dns", help="Extra DNS name for its TLS certificate (repeatable)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a witness home: its token and Ed25519 key, TLS certificate and config."""
    from trustfleet.services.witness_home import init_witness_home

    with console.status("Creating the witness token and key…", spinner="dots"):
        made = init_witness_home(
            home, name=name, logs=list(log), dns_names=tuple(dns or ()), now=now()
        )
    summary = {
        "home": str(made.settings.home),
        "name": made.settings.name,
        "vkey": made.vkey,
        "tls_cert": str(made.tls_cert),
        "logs": list(made.settings.logs),
    }
    if json_out:
        emit_json(summary)
        return
    console.print(f"[green]✓[/] witness home created at [bold]{made.settings.home}[/]")
    console.print(f"  cosignature key (vkey): {made.vkey}", soft_wrap=True, highlight=False)
    console.print(f"  TLS certificate: {made.tls_cert}")
    console.print(f"  next: trustfleet witness serve --home {home}")


@app.command("serve")
def serve(
    home: WitnessHomeOpt,
    host: Annotated[
        str | None, typer.Option("--host", help="Address (default: from the config).")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option("--port", min=0, max=65535, help="Port (default: from the config)."),
    ] = None,
) -> None:
    """Serve POST /add-checkpoint over HTTPS until stopped (Ctrl-C exits 130, SIGTERM 0)."""
    from trustfleet.server.witness_app import serve_witness
    from trustfleet.settings.witness import load_witness_settings

    settings = load_witness_settings(home)

    def ready(url: str) -> None:
        console.print(f"[green]✓[/] witness {settings.name} serving {url} (Ctrl-C to stop)")

    received = serve_witness(
        settings,
        host=host or settings.host,
        port=settings.port if port is None else port,
        on_ready=ready,
    )
    interrupted = received == "SIGINT"
    console.print(f"stopped: {'interrupted (Ctrl-C)' if interrupted else received + ' received'}")
    raise typer.Exit(INTERRUPTED_EXIT_CODE if interrupted else 0)


@app.command("status")
def status(home: WitnessHomeOpt, json_out: JsonOpt = False) -> None:
    """Per log: the size and root of the last checkpoint cosigned, and when."""
    from trustfleet.services.witness import witness_status

    logs = witness_status(home)
    if json_out:
        emit_json({"logs": logs})
        return
    if not logs:
        console.print("no checkpoint cosigned yet")
    for row in logs:
        console.print(
            f"{row['origin']}  size {row['size']}  root {row['root']}  "
            f"cosigned {row['cosigned_at']}",
            soft_wrap=True,
            highlight=False,
        )


@app.command("alerts")
def alerts(home: WitnessHomeOpt, json_out: JsonOpt = False) -> None:
    """Split views and failed consistency proofs the witness saw, oldest first."""
    from trustfleet.services.witness import witness_alerts

    records = witness_alerts(home)
    if json_out:
        emit_json({"alerts": records})
        return
    if not records:
        console.print("no alerts")
    for record in records:
        console.print(_alert_line(record), soft_wrap=True, highlight=False)


def _alert_line(record: dict[str, Any]) -> str:
    return f"[red]{record['time']}[/] {record['origin']}: {record['reason']}"
