"""``trustfleet ca rollover …``: a new generation of the device or manufacturing CA.

Registered under the ``ca`` group (cli/ca.py). ``start`` is a ceremony (the offline root signs;
custodians' PINs); ``activate`` and ``retire`` work on the online home (docs/lifecycle.md).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from trustfleet.cli._ceremony import OfflineOpt, PinFileOpt, ceremony_keys
from trustfleet.cli._common import HomeOpt, JsonOpt, command_runtime, now, present_done

__all__ = ["app"]

app = typer.Typer(
    help="Roll a device or manufacturing CA over to a new one with no downtime.",
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(help="The CA, e.g. device-2 (see 'trustfleet ca status').")]


@app.command("start")
def start(
    home: HomeOpt,
    kind: Annotated[
        str, typer.Option("--kind", help="device or manufacturing.", show_default=False)
    ],
    offline: OfflineOpt = None,
    pin_file: PinFileOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Ceremony: a new CA of that kind (key in the online token, certificate from the offline
    root; PIN of tf-root), published and trusted, not issuing yet (standby)."""
    from trustfleet.services.ceremony import ROOT_CA_TOKEN
    from trustfleet.services.rollover import start_rollover

    with command_runtime(home) as rt:
        keys = ceremony_keys(
            rt.settings, offline=offline, pin_files=pin_file, tokens=[ROOT_CA_TOKEN]
        )
        step = start_rollover(rt, keys, kind=kind, now=now())
    present_done(
        asdict(step), json_out=json_out,
        line=f"CA '{step.name}' made (standby, trusted, not issuing yet); next: "
        f"'trustfleet ca rollover activate {step.name}'",
    )  # fmt: skip


@app.command("activate")
def activate(name: NameArg, home: HomeOpt, json_out: JsonOpt = False) -> None:
    """Make a standby CA the one that issues; the one it replaces becomes retiring (still
    trusted, issuing no more)."""
    from trustfleet.services.rollover import activate_ca

    with command_runtime(home) as rt:
        step = activate_ca(rt, name, now=now())
    hint = "; then 'trustfleet server rotate-tls'" if step.kind == "device" else ""
    present_done(
        asdict(step), json_out=json_out,
        line=f"CA '{step.name}' active; '{step.previous}' retiring — move the devices "
        f"('trustfleet device reenroll --all --wait'){hint}",
    )  # fmt: skip


@app.command("retire")
def retire(
    name: NameArg,
    home: HomeOpt,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Retire although devices still hold a certificate of it (they are revoked "
            "cessationOfOperation and must be re-opened).",
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Retire a retiring CA: its final CRL, and nobody trusts it any more."""
    from trustfleet.services.rollover import retire_ca

    with command_runtime(home) as rt:
        step = retire_ca(rt, name, force=force, now=now())
    present_done(
        asdict(step), json_out=json_out,
        line=f"CA '{step.name}' retired; its final CRL revokes {step.revoked} certificate(s)",
    )  # fmt: skip
