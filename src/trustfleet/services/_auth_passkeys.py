"""Passkeys as a second factor: registration (a session at stage ``full``) and the login step
(a session at stage ``password``). Each ceremony's challenge is kept in the session row and
used once. Re-exported by :mod:`trustfleet.services.auth`."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from trustfleet.errors import Conflict, InvalidInput, VerificationFailed
from trustfleet.services import _passkeys as passkeys
from trustfleet.services._auth_core import LoginStep, second_factor, wrong_stage
from trustfleet.services._sessions import LiveSession, live_session

if TYPE_CHECKING:
    from trustfleet.services.runtime import Runtime
    from trustfleet.store import SessionStage, Transaction

__all__ = [
    "finish_passkey_login",
    "finish_passkey_registration",
    "passkey_login_options",
    "passkey_registration_options",
]


def _live_at(
    rt: Runtime, tx: Transaction, session_secret: str, stage: SessionStage, *, now: datetime
) -> LiveSession:
    live = live_session(tx, session_secret, settings=rt.settings.operators, now=now)
    if live.session.stage != stage:
        raise wrong_stage((stage,))
    return live


def passkey_registration_options(rt: Runtime, session_secret: str, *, now: datetime) -> str:
    """Options (JSON) for ``navigator.credentials.create``; the session keeps the challenge.

    Raises:
        Unauthenticated: The session is not live (code ``auth.session``).
        PermissionDenied: The session is not at stage ``full`` (code ``auth.stage``).
    """
    rp_id, _origin = passkeys.relying_party(rt.settings.api.public_url)
    with rt.uow.begin() as tx:
        live = _live_at(rt, tx, session_secret, "full", now=now)
        operator = live.operator
        options, challenge = passkeys.registration_options(
            rp_id=rp_id, rp_name=rt.settings.pki.organization,
            user_id=operator.id.to_bytes(8, "big"), user_name=operator.login,
            exclude=[p.credential_id for p in tx.operators.passkeys(operator.id)],
        )  # fmt: skip
        tx.operators.update_session(live.session.id_sha256, challenge=challenge)
    return options


def finish_passkey_registration(
    rt: Runtime, session_secret: str, credential_json: str, *, name: str, now: datetime
) -> None:
    """Verify the browser's new credential and register it under ``name``.

    Raises:
        Unauthenticated: The session is not live (code ``auth.session``).
        PermissionDenied: The session is not at stage ``full`` (code ``auth.stage``).
        VerificationFailed: No pending challenge, or the answer does not verify.
        InvalidInput: A bad name.
        Conflict: The passkey is registered already.
    """
    if not name.strip() or len(name) > 64 or not name.isprintable():
        raise InvalidInput("a passkey name is 1 to 64 printable characters", code="passkey.name")
    rp_id, origin = passkeys.relying_party(rt.settings.api.public_url)
    failure: VerificationFailed | None = None
    with rt.uow.begin() as tx:
        live = _live_at(rt, tx, session_secret, "full", now=now)
        challenge = live.session.challenge
        tx.operators.update_session(live.session.id_sha256, challenge=None)  # used once
        try:
            if challenge is None:
                raise VerificationFailed("no passkey ceremony is pending", code="auth.passkey.none")
            cred_id, public_key, count = passkeys.verify_registration(
                credential_json, challenge=challenge, rp_id=rp_id, origin=origin
            )
        except VerificationFailed as exc:
            failure = exc  # raised after the commit: the challenge stays used
        else:
            login = live.operator.login
            tx.operators.add_passkey(
                operator_id=live.operator.id, credential_id=cred_id, public_key=public_key,
                sign_count=count, name=name, now=now,
            )  # fmt: skip
            tx.events.append(
                type="operator.passkey_added", actor=f"operator:{login}",
                subject=f"operator:{login}", details={"name": name}, now=now,
            )  # fmt: skip
    if failure is not None:
        raise failure


def passkey_login_options(rt: Runtime, session_secret: str, *, now: datetime) -> str:
    """Options (JSON) for ``navigator.credentials.get`` with the operator's passkeys.

    Raises:
        Unauthenticated: The session is not live (code ``auth.session``).
        PermissionDenied: The session is not at stage ``password`` (code ``auth.stage``).
        Conflict: The operator has no passkey (code ``operator.passkey.none``).
    """
    rp_id, _origin = passkeys.relying_party(rt.settings.api.public_url)
    with rt.uow.begin() as tx:
        live = _live_at(rt, tx, session_secret, "password", now=now)
        allow = [p.credential_id for p in tx.operators.passkeys(live.operator.id)]
        if not allow:
            raise Conflict("no passkey is registered", code="operator.passkey.none")
        options, challenge = passkeys.authentication_options(rp_id=rp_id, allow=allow)
        tx.operators.update_session(live.session.id_sha256, challenge=challenge)
    return options


def finish_passkey_login(
    rt: Runtime, session_secret: str, credential_json: str, *, now: datetime
) -> LoginStep:
    """The passkey step of a login: on success a new session at stage ``full``.

    Raises:
        Unauthenticated: The session is not live (code ``auth.session``), or the passkey is
            unknown, does not verify, its counter did not grow, or the login is throttled
            ("login failed", code ``auth.login``).
        PermissionDenied: The session is not at stage ``password`` (code ``auth.stage``).
    """
    rp_id, origin = passkeys.relying_party(rt.settings.api.public_url)

    def attempt(tx: Transaction, live: LiveSession) -> str | None:
        challenge = live.session.challenge
        tx.operators.update_session(live.session.id_sha256, challenge=None)  # used once
        cred_id = passkeys.credential_id_of(credential_json)
        key = None if cred_id is None else tx.operators.passkey(cred_id)
        if challenge is None or key is None or key.operator_id != live.operator.id:
            return "no challenge" if challenge is None else "unknown passkey"
        try:
            count = passkeys.verify_authentication(
                credential_json, challenge=challenge, rp_id=rp_id, origin=origin,
                public_key=key.public_key, sign_count=key.sign_count,
            )  # fmt: skip
        except VerificationFailed as exc:
            return str(exc.code)
        if not tx.operators.use_passkey(key.id, old_count=key.sign_count, new_count=count, now=now):
            return "auth.passkey.sign_count"
        return None

    return second_factor(
        rt, session_secret, now=now, method="passkey", stages=("password",), attempt=attempt
    )
