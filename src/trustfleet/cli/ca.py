"""``trustfleet ca …``: the CAs of the home and the root CA's ceremonies."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from trustfleet.cli._ca_rollover import app as rollover_app
from trustfleet.cli._ceremony import OfflineOpt, PinFileOpt, ceremony_keys
from trustfleet.cli._common import HomeOpt, JsonOpt, command_runtime, console, emit_json, now

__all__ = ["app"]

app = typer.Typer(
    help="The CAs of the home: status, and ceremonies with the offline root CA.",
    no_args_is_help=True,
)
app.add_typer(rollover_app, name="rollover")


def _text(value: Any) -> str:
    return "-" if value is None else str(value)


@app.command("status")
def status(home: HomeOpt, json_out: JsonOpt = False) -> None:
    """Every CA with its state, subject, expiry and CRL (needs no offline folder)."""
    from trustfleet.services.ca_status import ca_status

    with command_runtime(home) as rt:
        rows = ca_status(rt)
    if json_out:
        emit_json({"cas": [row.to_json() for row in rows]})
        return
    table = Table("name", "kind", "state", "offline", "subject", "not after", "CRL", "next update")
    for row in rows:
        table.add_row(
            row.name, row.kind, row.state, "yes" if row.offline else "no", _text(row.subject),
            _text(row.not_after), _text(row.crl_number), _text(row.crl_next_update),
        )  # fmt: skip
    console.print(table)


@app.command("crl-root")
def crl_root(
    home: HomeOpt,
    offline: OfflineOpt = None,
    pin_file: PinFileOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Ceremony: re-sign the root CA's CRL with the offline root key (PIN of tf-root)."""
    from cryptography import x509

    from trustfleet.services.ceremony import ROOT_CA_TOKEN, sign_root_crl

    with command_runtime(home) as rt:
        keys = ceremony_keys(
            rt.settings, offline=offline, pin_files=pin_file, tokens=[ROOT_CA_TOKEN]
        )
        crl = x509.load_der_x509_crl(sign_root_crl(rt, keys, now=now()))
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    doc = {
        "crl_number": number,
        "next_update": crl.next_update_utc.isoformat() if crl.next_update_utc else None,
    }
    if json_out:
        emit_json(doc)
        return
    console.print(f"[green]✓[/] root CRL {number} signed, next update {doc['next_update']}")
