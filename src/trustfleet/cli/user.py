"""``trustfleet user …``: operator accounts of the management API and the web console."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from trustfleet.cli._common import (
    command_runtime,
    console,
    hint_for_missing,
    now,
    present_done,
    present_page,
)
from trustfleet.cli._options import CursorOpt, HomeOpt, JsonOpt, LimitOpt
from trustfleet.errors import InvalidInput
from trustfleet.fileio import read_bounded

if TYPE_CHECKING:
    from trustfleet.store import OperatorRecord

__all__ = ["OPERATOR_LIST_HINT", "app", "operator_document", "read_password_file"]

app = typer.Typer(
    help="Operator accounts: add, list, disable and enable, reset MFA, change roles.",
    no_args_is_help=True,
)

LoginArg = Annotated[str, typer.Argument(help="The operator's login.")]
_ROLES_HELP = (
    "admin, security-officer, release-manager, fleet-operator, factory or auditor (see docs/api.md)"
)
_MAX_PASSWORD_FILE_BYTES = 1024
OPERATOR_LIST_HINT = "see the operators with 'trustfleet user list'"


def read_password_file(path: Path) -> str:
    """The password in a file (its first line; the file is read bounded).

    Raises:
        InvalidInput: The file cannot be read, is too large or is not UTF-8.
    """
    try:
        data = read_bounded(path, max_bytes=_MAX_PASSWORD_FILE_BYTES)
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}", hint="check the path") from exc
    if data is None:
        raise InvalidInput(f"{path} is larger than 1 KiB; not a password file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path} is not UTF-8 text") from exc
    lines = text.splitlines()
    return lines[0] if lines else ""


def operator_document(record: OperatorRecord) -> dict[str, Any]:
    """An operator as JSON (no secret)."""
    return {
        "login": record.login,
        "role": record.role,
        "disabled": record.disabled,
        "must_change_password": record.must_change_password,
        "totp": record.totp_enabled,
        "passkeys": record.passkeys,
        "created_at": record.created_at.isoformat(),
        "last_login_at": record.last_login_at.isoformat() if record.last_login_at else None,
    }


@app.command("add")
def add(
    home: HomeOpt,
    login: LoginArg,
    role: Annotated[str, typer.Option("--role", help=_ROLES_HELP)],
    password_file: Annotated[
        Path | None,
        typer.Option("--password-file", help="Read the password from this file (first line)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Add an operator. Without --password-file a one-time password is printed once; it must
    be changed at the first login."""
    from trustfleet.services.operators import add_operator

    password = read_password_file(password_file) if password_file is not None else None
    with command_runtime(home) as rt:
        record, one_time = add_operator(rt, login=login, role=role, password=password, now=now())
    doc = operator_document(record)
    if one_time is not None:
        doc["one_time_password"] = one_time
    present_done(doc, json_out=json_out, line=f"operator [bold]{login}[/] added ({role})")
    if one_time is not None and not json_out:
        console.print(
            f"one-time password: {one_time}  (shown once; to be changed at the first login)",
            highlight=False,
            soft_wrap=True,
        )


@app.command("list")
def list_users(
    home: HomeOpt, limit: LimitOpt = 100, cursor: CursorOpt = None, json_out: JsonOpt = False
) -> None:
    """List operators ordered by login, one page at a time."""
    from trustfleet.services.operators import list_operators

    with command_runtime(home) as rt:
        page = list_operators(rt, limit=limit, cursor=cursor)
    rows = [operator_document(o) for o in page.items]
    present_page(
        "operators", rows, next_cursor=page.next_cursor, json_out=json_out,
        table=Table("login", "role", "state", "MFA", "last login"),
        cells=lambda r: (
            r["login"], r["role"], "disabled" if r["disabled"] else "enabled",
            ", ".join(m for m, on in (("totp", r["totp"]), ("passkey", r["passkeys"])) if on)
            or "-",
            r["last_login_at"] or "never",
        ),
    )  # fmt: skip


def _change(home: Path, login: str, *, json_out: bool, what: str, **kwargs: Any) -> None:
    from trustfleet.services import operators

    action = {
        "disabled": operators.disable_operator,
        "enabled": operators.enable_operator,
        "MFA reset": operators.reset_mfa,
    }
    with command_runtime(home) as rt, hint_for_missing(OPERATOR_LIST_HINT):
        if what == "role changed":
            record = operators.set_role(rt, login, kwargs["role"], now=now())
        else:
            record = action[what](rt, login, now=now())
    present_done(
        operator_document(record), json_out=json_out, line=f"operator [bold]{login}[/] {what}"
    )


@app.command("disable")
def disable(home: HomeOpt, login: LoginArg, json_out: JsonOpt = False) -> None:
    """Disable an operator: its sessions end and its API tokens are revoked."""
    _change(home, login, json_out=json_out, what="disabled")


@app.command("enable")
def enable(home: HomeOpt, login: LoginArg, json_out: JsonOpt = False) -> None:
    """Enable a disabled operator (its revoked tokens stay revoked)."""
    _change(home, login, json_out=json_out, what="enabled")


@app.command("reset-mfa")
def reset_mfa(home: HomeOpt, login: LoginArg, json_out: JsonOpt = False) -> None:
    """Remove an operator's TOTP and passkeys and end its sessions (it enrolls again)."""
    _change(home, login, json_out=json_out, what="MFA reset")


@app.command("set-role")
def set_role(
    home: HomeOpt,
    login: LoginArg,
    role: Annotated[str, typer.Argument(help=_ROLES_HELP)],
    json_out: JsonOpt = False,
) -> None:
    """Change an operator's role (its sessions end)."""
    _change(home, login, json_out=json_out, what="role changed", role=role)
