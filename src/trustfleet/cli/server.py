"""``trustfleet server …``: create a server home, run the service."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from trustfleet.cli import _backup
from trustfleet.cli._ceremony import print_offline_pins
from trustfleet.cli._common import HomeOpt, JsonOpt, console, emit_json, interruptible, now
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
        int,
        typer.Option(
            "--api-port",
            min=1,
            max=65535,
            help="HTTPS port written into the config and certificates.",
        ),
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
    mqtt_port: Annotated[
        int,
        typer.Option("--mqtt-port", min=1, max=65535, help="MQTT (TLS) port for the config."),
    ] = 8883,
    admin_password_file: Annotated[
        Path | None,
        typer.Option(
            "--admin-password-file",
            help="The first operator's ('admin') password, first line of this file (default: "
            "a one-time password printed once).",
        ),
    ] = None,
    offline: Annotated[
        Path | None,
        typer.Option(
            "--offline",
            help="The offline folder for the root CA and TUF root tokens (default: "
            "<home>-offline beside the home); move it to the custodians' media.",
        ),
    ] = None,
    pins_out: Annotated[
        Path | None,
        typer.Option(
            "--pins-out",
            help="Write the offline tokens' PINs here, one 0600 file per token (for "
            "automation; default: shown once).",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a new server home: tokens, CA hierarchy, TLS certificates, store, config, and the
    first operator 'admin' (who must change its password at the first login). The root CA key
    and the TUF root keys go to tokens in an offline folder whose PINs the home never keeps."""
    from trustfleet.cli.user import read_password_file
    from trustfleet.services.first_admin import create_server_home
    from trustfleet.services.home import HomeOptions

    options = HomeOptions(
        organization=name,
        api_port=api_port,
        dns_names=tuple(dns or ()),
        ip_addresses=tuple(ip or ()),
        store_url=store_url,
        mqtt_port=mqtt_port,
        admin_password=read_password_file(admin_password_file) if admin_password_file else None,
        offline=offline,
        pins_out=pins_out,
    )
    removed = f"nothing was kept: the partly made home {home} and offline folder were removed"
    with (
        interruptible(lambda: removed),
        console.status("Creating tokens, CA keys and certificates…", spinner="dots"),
    ):
        made = create_server_home(home, options=options, now=now())
    settings = made.settings
    summary = {**_summary(settings), "admin_login": "admin"}
    if made.admin_password is not None:
        summary["admin_password"] = made.admin_password
    if made.offline_pins:
        summary["offline_pins"] = dict(made.offline_pins)
    if pins_out is not None:
        summary["pins_out"] = str(pins_out)
    if json_out:
        emit_json(summary)
        return
    console.print(f"[green]✓[/] server home created at [bold]{settings.home}[/]")
    console.print(f"  trust bundle: {summary['ca_bundle']}")
    console.print(f"  offline folder: {summary['offline']} (not needed by 'server run')")
    if made.offline_pins:
        print_offline_pins(made.offline_pins)
    else:
        console.print(f"  offline tokens' PINs written to {pins_out}")
    _print_admin(made.admin_password)
    console.print(f"  next: trustfleet server run --home {home}")


def _print_admin(one_time: str | None) -> None:
    if one_time is None:
        console.print("  first operator: admin (the password from --admin-password-file)")
    else:
        console.print(
            f"  first operator: admin, one-time password {one_time} (shown once; to be "
            "changed at the first login)",
            highlight=False,
            soft_wrap=True,
        )


def _summary(settings: Any) -> dict[str, Any]:
    return {
        "home": str(settings.home),
        "public_url": settings.api.public_url,
        "mqtt_port": settings.broker.port,
        "ca_bundle": str(settings.path("public/ca-bundle.pem")),
        "config": str(settings.home / "trustfleet.toml"),
        "offline": settings.lifecycle.offline_dir,
    }


@app.command("run")
def run(
    home: HomeOpt,
    api_port: Annotated[
        int | None,
        typer.Option("--api-port", min=1, max=65535, help="HTTPS port (default: from the config)."),
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, max=64, help="HTTPS worker processes.")
    ] = None,
    mqtt_port: Annotated[
        int | None,
        typer.Option("--mqtt-port", min=1, max=65535, help="MQTT port (default: from the config)."),
    ] = None,
) -> None:
    """Serve HTTPS (EST, CRL, OCSP), the MQTT broker and the ingest workers until stopped.

    One server per home. Ctrl-C exits 130 (SIGTERM 0) after stopping every process it started;
    ``GET /readyz`` reports each component (docs/operations.md).
    """
    try:  # a Ctrl-C before run_server's own handlers: nothing was started yet
        from trustfleet.server.run import ServiceStatus, StopReport, run_server

        settings = load_server_settings(home)
    except KeyboardInterrupt:
        console.print("stopped: interrupted (Ctrl-C) before anything was started")
        raise typer.Exit(130) from None
    port = api_port or settings.api.port

    def ready(status: ServiceStatus) -> None:
        host = settings.api.host
        mqtt_host = settings.broker.host
        if status.broker_running:
            mqtt = f"mqtts://{mqtt_host}:{status.mqtt_port}"
            ingest = f"{status.ingest_workers} ingest worker(s)"
            if status.ingest_workers and not status.ingest_ready:
                ingest += " (not subscribed yet)"
        else:
            mqtt = f"[red]MQTT broker not running[/] ({status.broker_error}; retrying)"
            ingest = ""
        if status.migrated:
            console.print(status.migrated, soft_wrap=True, highlight=False)
        if status.leftovers_stopped:
            left = ", ".join(status.leftovers_stopped)
            console.print(f"stopped what a killed earlier run left: {left}", soft_wrap=True)
        console.print(
            f"[green]✓[/] serving https://{host}:{status.api_port} and {mqtt}"
            + (f", {ingest}" if ingest else "")
            + " (Ctrl-C to stop)",
            soft_wrap=True,
        )

    def stopped(report: StopReport) -> None:
        if report.signal is None:
            return
        what = f"{report.children_stopped} worker process(es)"
        if report.broker_stopped:
            what += " and the MQTT broker"
        why = "interrupted (Ctrl-C)" if report.signal == "SIGINT" else f"{report.signal} received"
        console.print(f"stopped: {why}; {what} stopped", soft_wrap=True, highlight=False)

    code = run_server(
        settings, port=port, workers=workers, mqtt_port=mqtt_port, on_ready=ready,
        on_stopped=stopped,
    )  # fmt: skip
    raise typer.Exit(code)


@app.command("rotate-tls")
def rotate_tls_command(home: HomeOpt, json_out: JsonOpt = False) -> None:
    """Issue new TLS server certificates (HTTPS, broker: new keys) and a new service MQTT
    certificate from the active device CA.

    A running 'server run' loads them within [broker] revocation_poll_s without dropping a
    connection (docs/lifecycle.md).
    """
    from trustfleet.cli._common import command_runtime, present_done
    from trustfleet.services.tls_rotation import rotate_tls

    with command_runtime(home) as rt:
        done = rotate_tls(rt, now=now())
    document = {"issuer": done.issuer, "serials": done.serials, "previous": done.previous}
    line = f"TLS certificates rotated; issued by CA '{done.issuer}' " + ", ".join(
        f"{name} {serial}" for name, serial in done.serials.items()
    )
    present_done(document, json_out=json_out, line=line)


app.command("backup")(_backup.backup)
app.command("restore")(_backup.restore)
app.command("check")(_backup.check)
