"""``trustfleet server …``: create a server home, run the service."""

from __future__ import annotations

from typing import Annotated

import typer

from trustfleet.cli._common import HomeOpt, JsonOpt, console, emit_json, now
from trustfleet.settings import load_server_settings

__all__ = ["app"]

app = typer.Typer(help="Create and run the fleet service.", no_args_is_help=True)


@app.command("init")
def init(
    home: HomeOpt,
    name: Annotated[
        str, typer.Option("--name", help="Organization named in the certificates.")
    ] = "TrustFleet",
    api_port: Annotated[
        int, typer.Option("--api-port", help="HTTPS port written into the config and certificates.")
    ] = 8443,
    dns: Annotated[
        list[str] | None,
        typer.Option("--dns", help="Extra DNS name for the server certificates (repeatable)."),
    ] = None,
    ip: Annotated[
        list[str] | None,
        typer.Option("--ip", help="Extra IP address for the server certificates (repeatable)."),
    ] = None,
    store_url: Annotated[
        str | None,
        typer.Option("--store-url", help="SQLAlchemy URL (default: SQLite in the home)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a new server home: tokens, CA hierarchy, TLS certificates, store, config."""
    from trustfleet.services.home import HomeOptions, init_server_home

    options = HomeOptions(
        organization=name,
        api_port=api_port,
        dns_names=tuple(dns or ()),
        ip_addresses=tuple(ip or ()),
        store_url=store_url,
    )
    with console.status("Creating tokens, CA keys and certificates…", spinner="dots"):
        settings = init_server_home(home, options=options, now=now())
    summary = {
        "home": str(settings.home),
        "public_url": settings.api.public_url,
        "ca_bundle": str(settings.path("public/ca-bundle.pem")),
        "config": str(settings.home / "trustfleet.toml"),
    }
    if json_out:
        emit_json(summary)
        return
    console.print(f"[green]✓[/] server home created at [bold]{settings.home}[/]")
    console.print(f"  trust bundle: {summary['ca_bundle']}")
    console.print(f"  next: trustfleet server run --home {home}")


@app.command("run")
def run(
    home: HomeOpt,
    api_port: Annotated[
        int | None, typer.Option("--api-port", help="HTTPS port (default: from the config).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, max=64, help="Worker processes.")
    ] = None,
) -> None:
    """Serve EST enrollment, CRLs and OCSP over HTTPS (TLS 1.3 only) until stopped."""
    from trustfleet.server.run import run_server

    settings = load_server_settings(home)
    port = api_port or settings.api.port

    def ready() -> None:
        console.print(f"[green]✓[/] serving https://{settings.api.host}:{port} (Ctrl-C to stop)")

    code = run_server(settings, port=port, workers=workers, on_ready=ready)
    raise typer.Exit(code)
