"""API tokens for automation: ``tf_<id>_<secret>``, created, listed and revoked.

The id (12 hex characters) is public (listed, named in events); the secret is 256 random bits
(43 base64url characters), shown once, stored only as SHA-256. A token acts with its own role,
which must hold no permission its owner's role lacks (an admin or an auditor may also mint a
``metrics`` token for a scraper); it lives at most ``[operators] token_max_ttl_s``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

from trustfleet import rbac
from trustfleet.audit.context import current_operator
from trustfleet.errors import InvalidInput, NotFound, PermissionDenied
from trustfleet.services.queries import Page, parse_cursor
from trustfleet.services.queries import _page as page_of  # one way to page

if TYPE_CHECKING:
    from trustfleet.services.runtime import Runtime
    from trustfleet.store import ApiTokenRecord

__all__ = [
    "TOKEN_PATTERN",
    "create_token",
    "format_token",
    "list_tokens",
    "may_mint",
    "parse_token",
    "parse_ttl",
    "revoke_token",
]

TOKEN_PATTERN: Final = re.compile(r"tf_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
"""An API token: ``tf_``, the 12-character id, ``_``, the 43-character secret."""
_MAX_NAME_CHARS: Final = 64
_TTL = re.compile(r"([0-9]{1,9})([smhd]?)")
_TTL_UNIT_S: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_ttl(text: str) -> int:
    """A token lifetime such as ``"30d"``, ``"12h"``, ``"30m"``, ``"90s"`` (or plain seconds).

    Raises:
        InvalidInput: It is not one (code ``token.ttl``).
    """
    match = _TTL.fullmatch(text.strip())
    if match is None:
        raise InvalidInput(
            f"'{text[:40]}' is not a lifetime", hint="e.g. 30d, 12h, 30m or 90s", code="token.ttl"
        )
    return int(match[1]) * _TTL_UNIT_S[match[2]]


def format_token(token_id: str, secret: str) -> str:
    """The token string of an id and a secret."""
    return f"tf_{token_id}_{secret}"


def parse_token(presented: str) -> tuple[str, str] | None:
    """The (id, secret) of a token string, or None when it is not one."""
    if len(presented) > 64:
        return None
    match = TOKEN_PATTERN.fullmatch(presented.strip())
    return None if match is None else (match[1], match[2])


def may_mint(owner_role: str, token_role: str) -> bool:
    """Whether an operator of ``owner_role`` may create a token acting as ``token_role``: its
    permissions are a subset of the owner's (a ``metrics`` token needs ``metrics.read``)."""
    wanted = rbac.permissions_of(token_role)
    return token_role in rbac.ROLES and bool(wanted) and wanted <= rbac.permissions_of(owner_role)


def create_token(
    rt: Runtime, *, owner: str, name: str, role: str, ttl_s: int, now: datetime
) -> tuple[ApiTokenRecord, str]:
    """Create an API token for ``owner``; return it and its secret string (shown once).

    Raises:
        NotFound: No such operator (code ``operator.not_found``).
        InvalidInput: A bad name or lifetime, or an unknown role.
        PermissionDenied: The role holds permissions the owner lacks, or the owner is disabled
            (code ``token.role``).
    """
    max_ttl_s = rt.settings.operators.token_max_ttl_s
    if not 60 <= ttl_s <= max_ttl_s:
        raise InvalidInput(
            f"a token lives 60 s to {max_ttl_s} s", code="token.ttl",
            hint="see [operators] token_max_ttl_s",
        )  # fmt: skip
    if not name.strip() or len(name) > _MAX_NAME_CHARS or not name.isprintable():
        raise InvalidInput("a token name is 1 to 64 printable characters", code="token.name")
    if role not in rbac.ROLES:
        raise InvalidInput(f"unknown role {role[:40]!r}", code="token.role")
    with rt.uow.begin() as tx:
        operator = tx.operators.require(owner)
        if operator.disabled or not may_mint(operator.role, role):
            raise PermissionDenied(
                f"{owner!r} may not create a token with role {role!r}",
                hint="a token's role holds no permission its owner lacks",
                code="token.role",
            )
        token_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        record = tx.operators.add_token(
            id=token_id, operator_id=operator.id, name=name, role=role,
            secret_sha256=hashlib.sha256(secret.encode("ascii")).hexdigest(),
            now=now, expires_at=now + timedelta(seconds=ttl_s),
        )  # fmt: skip
        tx.events.append(
            type="token.created", actor=current_operator(), subject=f"operator:{owner}",
            details={"token": token_id, "name": name, "role": role,
                     "expires_at": record.expires_at.isoformat()},
            now=now,
        )  # fmt: skip
    return record, format_token(token_id, secret)


def list_tokens(
    rt: Runtime, *, owner: str | None, limit: int, cursor: str | None = None
) -> Page[ApiTokenRecord]:
    """A page of API tokens (of one owner if given), newest first.

    Raises:
        NotFound: No such owner.
        InvalidInput: A bad cursor or limit.
    """
    offset = parse_cursor(cursor)
    with rt.uow.begin(read_only=True) as tx:
        operator_id = None if owner is None else tx.operators.require(owner).id
        return page_of(
            tx, lambda t, n, o: t.operators.tokens(operator_id=operator_id, limit=n, offset=o),
            limit=limit, offset=offset,
        )  # fmt: skip


def revoke_token(
    rt: Runtime, token_id: str, *, now: datetime, owner: str | None = None
) -> ApiTokenRecord:
    """Revoke a token (revoking a revoked one changes nothing).

    Args:
        rt: The runtime.
        token_id: The token's public id.
        now: The current time.
        owner: When given, only a token of this operator (a non-admin revokes only their own).

    Raises:
        NotFound: No such token (or not ``owner``'s) (code ``token.not_found``).
    """
    with rt.uow.begin() as tx:
        stored = tx.operators.stored_token(token_id[:16])
        if stored is None or (owner is not None and stored.token.owner != owner):
            raise NotFound(f"token {token_id[:16]!r} not found", code="token.not_found")
        if tx.operators.revoke_tokens(id=token_id, now=now):
            tx.events.append(
                type="token.revoked", actor=current_operator(),
                subject=f"operator:{stored.token.owner}", details={"token": token_id}, now=now,
            )  # fmt: skip
        again = tx.operators.stored_token(token_id)
        assert again is not None  # noqa: S101  # it was there in this transaction
        return again.token
