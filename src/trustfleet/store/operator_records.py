"""Records of the operator plane returned by ``tx.operators``: operators, passkeys, API tokens,
sessions and login throttling.

Frozen dataclasses like :mod:`trustfleet.store.records`. The records meant for presentation
(:class:`OperatorRecord`, :class:`ApiTokenRecord`, :class:`SessionRecord`) carry no secret and
no hash of one; the services that verify credentials read those through
:class:`OperatorCredentials` and :class:`StoredToken`, which never leave the services.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

__all__ = [
    "ApiTokenRecord",
    "OperatorCredentials",
    "OperatorRecord",
    "PasskeyRecord",
    "SessionRecord",
    "SessionStage",
    "StoredToken",
    "ThrottleRecord",
]

SessionStage = Literal["password", "mfa-enroll", "full"]


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorRecord:
    """An operator account (no password hash, no TOTP seed).

    Attributes:
        id: The row id.
        login: The login name (1 to 64 characters).
        role: A role of :mod:`trustfleet.rbac` (never a token-only role).
        must_change_password: The password was set by someone else (a one-time password).
        totp_enabled: A TOTP seed is enrolled and confirmed.
        passkeys: How many passkeys the operator registered.
        disabled_at: When the account was disabled, if it is.
        created_at: When it was added (UTC).
        updated_at: When it last changed (UTC).
        last_login_at: The last successful login, if any.
    """

    id: int
    login: str
    role: str
    must_change_password: bool
    totp_enabled: bool
    passkeys: int
    disabled_at: datetime | None
    created_at: datetime
    updated_at: datetime
    last_login_at: datetime | None

    @property
    def disabled(self) -> bool:
        """Whether the account is disabled."""
        return self.disabled_at is not None

    @property
    def mfa_enabled(self) -> bool:
        """Whether a second factor (TOTP or a passkey) is set up."""
        return self.totp_enabled or self.passkeys > 0


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorCredentials:
    """What verifying an operator's credentials needs (for the services only; never shown).

    Attributes:
        operator: The account.
        password_hash: The argon2id hash (PHC string).
        totp_secret: The base32 TOTP seed, enrolled or pending confirmation, if any.
        totp_last_step: The last TOTP time step accepted (a code is used once).
    """

    operator: OperatorRecord
    password_hash: str
    totp_secret: str | None
    totp_last_step: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class PasskeyRecord:
    """A WebAuthn credential of an operator.

    Attributes:
        id: The row id.
        operator_id: Whose it is.
        credential_id: The authenticator's credential id.
        public_key: The credential's public key (COSE_Key).
        sign_count: The last signature counter seen.
        name: A name the operator gave it.
        created_at: When it was registered.
        last_used_at: When it last signed a login, if ever.
    """

    id: int
    operator_id: int
    credential_id: bytes
    public_key: bytes
    sign_count: int
    name: str
    created_at: datetime
    last_used_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiTokenRecord:
    """An API token (never its secret).

    Attributes:
        id: The public id, the part after ``tf_`` in the token.
        operator_id: The owner's row id.
        owner: The owner's login.
        name: What the owner called it.
        role: The role the token acts with.
        created_at: When it was created.
        expires_at: When it stops working.
        revoked_at: When it was revoked, if it was.
        last_used_at: When it last authenticated a request, if ever.
    """

    id: str
    operator_id: int
    owner: str
    name: str
    role: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredToken:
    """An API token and the SHA-256 of its secret (for the services only)."""

    token: ApiTokenRecord
    secret_sha256: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionRecord:
    """A console session (its id is stored only as a SHA-256).

    Attributes:
        id_sha256: SHA-256 (hex) of the session secret.
        operator_id: Whose session it is.
        stage: How far the login got.
        mfa_method: The second factor used ("totp" or "passkey"), if any.
        challenge: A pending WebAuthn challenge, if any.
        created_at: When the session (this stage) started.
        last_seen_at: The last request (the idle timeout counts from it).
        expires_at: The absolute timeout.
        ended_at: When it was ended (logout, stage change, account disabled), if it was.
        origin: From where it was opened.
    """

    id_sha256: str
    operator_id: int
    stage: SessionStage
    mfa_method: str | None
    challenge: bytes | None
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    ended_at: datetime | None
    origin: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ThrottleRecord:
    """Failed logins counted under one key (``login:<name>`` or ``addr:<ip>``)."""

    key: str
    failures: int
    window_started_at: datetime
    locked_until: datetime | None
