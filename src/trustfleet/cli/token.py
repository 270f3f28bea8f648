"""``trustfleet token …``: API tokens for automation (created for an operator, shown once)."""

from __future__ import annotations

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
from trustfleet.cli.user import OPERATOR_LIST_HINT

if TYPE_CHECKING:
    from trustfleet.store import ApiTokenRecord

__all__ = ["app", "token_document"]

app = typer.Typer(help="API tokens: create (shown once), list, revoke.", no_args_is_help=True)


def token_document(record: ApiTokenRecord) -> dict[str, Any]:
    """A token as JSON (never its secret)."""
    return {
        "id": record.id,
        "owner": record.owner,
        "name": record.name,
        "role": record.role,
        "created_at": record.created_at.isoformat(),
        "expires_at": record.expires_at.isoformat(),
        "revoked_at": record.revoked_at.isoformat() if record.revoked_at else None,
        "last_used_at": record.last_used_at.isoformat() if record.last_used_at else None,
    }


@app.command("create")
def create(
    home: HomeOpt,
    owner: Annotated[str, typer.Option("--owner", help="The operator the token acts for.")],
    name: Annotated[str, typer.Option("--name", help="What the token is for.")],
    role: Annotated[
        str,
        typer.Option(
            "--role",
            help="Its role: the owner's, one with fewer permissions, or "
            "'metrics' (a scraper's, for admin and auditor owners).",
        ),
    ],
    ttl: Annotated[
        str,
        typer.Option(
            "--ttl",
            help="Lifetime: 90s, 30m, 12h or 30d (at most [operators] "
            "token_max_ttl_s, 90 days by default).",
        ),
    ] = "30d",
    json_out: JsonOpt = False,
) -> None:
    """Create an API token and print it once (only its SHA-256 is kept)."""
    from trustfleet.services.api_tokens import create_token, parse_ttl

    with command_runtime(home) as rt, hint_for_missing(OPERATOR_LIST_HINT):
        record, secret = create_token(
            rt, owner=owner, name=name, role=role, ttl_s=parse_ttl(ttl), now=now()
        )
    doc = {**token_document(record), "token": secret}
    line = f"token [bold]{record.id}[/] created for {owner} ({role}) until {doc['expires_at']}"
    present_done(doc, json_out=json_out, line=line)
    if not json_out:
        console.print(f"token: {secret}  (shown once)", highlight=False, soft_wrap=True)


@app.command("list")
def list_tokens(
    home: HomeOpt,
    owner: Annotated[str | None, typer.Option("--owner", help="Only this operator's.")] = None,
    limit: LimitOpt = 100,
    cursor: CursorOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List API tokens, newest first, one page at a time."""
    from trustfleet.services.api_tokens import list_tokens as query

    with command_runtime(home) as rt, hint_for_missing(OPERATOR_LIST_HINT):
        page = query(rt, owner=owner, limit=limit, cursor=cursor)
    rows = [token_document(t) for t in page.items]
    present_page(
        "tokens", rows, next_cursor=page.next_cursor, json_out=json_out,
        table=Table("id", "owner", "name", "role", "expires", "state"),
        cells=lambda r: (
            r["id"], r["owner"], r["name"], r["role"], r["expires_at"],
            "revoked" if r["revoked_at"] else "active",
        ),
    )  # fmt: skip


@app.command("revoke")
def revoke(
    home: HomeOpt,
    token_id: Annotated[str, typer.Argument(help="The token's id (the part after 'tf_').")],
    json_out: JsonOpt = False,
) -> None:
    """Revoke an API token: it stops working at once."""
    from trustfleet.services.api_tokens import revoke_token

    with (
        command_runtime(home) as rt,
        hint_for_missing("see the tokens with 'trustfleet token list'"),
    ):
        record = revoke_token(rt, token_id, now=now())
    present_done(
        token_document(record), json_out=json_out, line=f"token [bold]{token_id}[/] revoked"
    )
