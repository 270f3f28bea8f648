"""``trustfleet ca rollover …``: a new generation of the device or manufacturing CA.

Registered under the ``ca`` group (cli/ca.py). ``start`` is a ceremony (the offline root signs;
custodians' PINs); ``activate`` and ``retire`` work on the online home (docs/lifecycle.md).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

import typer

from trustfleet.cli._common import HomeOpt, JsonOpt, command_runtime, now, present_done

__all__ = ["app", "start_with_root"]

app = typer.Typer(
    help="Roll a device or manufacturing CA over to a new one with no downtime.",
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(help="The CA, e.g. device-2 (see 'trustfleet ca status').")]


def start_with_root(home: Any, *, kind: str, root: Any, json_out: bool) -> None:
    """``ca rollover start`` once the ceremony opened the root CA (``root``: IssuerContext)."""
    from trustfleet.services.rollover import start_rollover

    with command_runtime(home) as rt:
        step = start_rollover(rt, kind=kind, root=root, now=now())
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
