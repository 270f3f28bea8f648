"""Tokens: initialisation, long-lived logged-in sessions, EC and Ed25519 key generation, lookup."""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pkcs11.exceptions as p11e
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass, Token
from pkcs11.types import SignMixin
from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters

from trustfleet.errors import (
    Config,
    Conflict,
    InvalidInput,
    NotFound,
    Unavailable,
)
from trustfleet.keystore._cryptoki import (
    CKU_SO,
    LABEL_BYTES,
    MAX_KEY_LABEL_CHARS,
    CkError,
    check_label,
)
from trustfleet.keystore._eckey import Pkcs11EcPrivateKey
from trustfleet.keystore._edkey import ED25519_CURVE_OID, Pkcs11Ed25519Key, ed25519_public_bytes
from trustfleet.keystore._runtime import MODULE_LOCK, LoadedModule, use_module
from trustfleet.keystore._secretkey import SecretKeyOps
from trustfleet.keystore._translate import translate
from trustfleet.keystore._uri import Pkcs11Uri

logger = logging.getLogger(__name__)

CURVES: dict[str, tuple[str, type[ec.EllipticCurve]]] = {
    "P-256": ("secp256r1", ec.SECP256R1),
    "P-384": ("secp384r1", ec.SECP384R1),
}
"""Curves the keystore generates keys on: name → (PKCS#11 named curve, cryptography class)."""

KEY_ID_BYTES = 16
# CKR_PIN_INVALID, CKR_PIN_LEN_RANGE: at initialisation these are input errors, not logins.
_PIN_REJECTED = frozenset({0xA1, 0xA2})
_Key = TypeVar("_Key", Pkcs11EcPrivateKey, Pkcs11Ed25519Key)
_T = TypeVar("_T")


def init_token(*, module: Path, conf: Path | None, label: str, so_pin: str, user_pin: str) -> None:
    """Initialise a free token slot with a label, an SO PIN and a user PIN.

    Args:
        module: The PKCS#11 module.
        conf: The SoftHSM2 configuration to make active (None keeps the active one).
        label: The new token's label (at most 32 bytes of UTF-8).
        so_pin: The security officer PIN.
        user_pin: The user PIN.

    Raises:
        Conflict: A token with this label exists.
        Unavailable: No slot has an uninitialised token.
        InvalidInput: The label or a PIN is not acceptable to the token.
        Config: Another configuration is busy (see ``use_module``).
    """
    check_label(label, "a token label", LABEL_BYTES)
    if not so_pin or not user_pin:
        raise InvalidInput("the SO PIN and the user PIN must not be empty")
    with use_module(module, conf) as loaded:
        try:
            _init_token_locked(loaded, label=label, so_pin=so_pin, user_pin=user_pin)
        except CkError as exc:
            if exc.rv in _PIN_REJECTED:
                raise InvalidInput(
                    f"the token refused a PIN for token '{label}' ({exc.function})",
                    hint="PINs must be 4 to 255 characters for SoftHSM2",
                ) from exc
            raise translate(exc, action="initialising the token", token=label) from exc
    logger.info("initialised PKCS#11 token %r", label)


def _init_token_locked(loaded: LoadedModule, *, label: str, so_pin: str, user_pin: str) -> None:
    ck = loaded.ck
    ck.initialize()
    slots = ck.token_slots()
    if any(slot.initialized and slot.label == label for slot in slots):
        raise Conflict(f"a token labelled '{label}' exists already", code="keystore.token.exists")
    free = next((slot for slot in slots if not slot.initialized), None)
    if free is None:
        raise Unavailable(
            "no slot with an uninitialised token is left",
            hint="use another configuration or free a slot",
            code="keystore.token.no_free_slot",
        )
    ck.init_token(free.slot_id, so_pin=so_pin, label=label)
    handle = ck.open_session(free.slot_id)
    try:
        ck.login(handle, user_type=CKU_SO, pin=so_pin)
        try:
            ck.init_pin(handle, pin=user_pin)
        finally:
            ck.logout(handle)
    finally:
        ck.close_session(handle)


def _find_token(loaded: LoadedModule, label: str) -> Token:
    try:
        return loaded.lib.get_token(token_label=label)
    except p11e.PKCS11Error as exc:
        raise translate(exc, action="looking up the token", token=label) from exc


def open_token(*, module: Path, label: str, pin: str, conf: Path | None) -> TokenSession:
    """Open a logged-in, read-write session on a token.

    The session can stay open for the life of a process; close it (or use ``with``) when done.
    While it is open, the module cannot switch to another configuration.

    Args:
        module: The PKCS#11 module.
        label: The token label.
        pin: The user PIN.
        conf: The SoftHSM2 configuration to make active (None keeps the active one).

    Returns:
        The open session.

    Raises:
        NotFound: No token has this label.
        PermissionDenied: The PIN is wrong.
        Config: Another configuration is busy.
    """
    with use_module(module, conf) as loaded:
        token = _find_token(loaded, label)
        try:
            session = token.open(rw=True)
        except p11e.PKCS11Error as exc:
            raise translate(exc, action="opening a session", token=label) from exc
        handle: int = session.handle  # type: ignore[attr-defined]  # the Cython Session has it
        try:
            loaded.login(handle, serial=token.serial, pin=pin, token=label)
        except BaseException:
            with contextlib.suppress(p11e.PKCS11Error):
                session.close()
            raise
        opened = TokenSession(loaded=loaded, session=session, label=label, serial=token.serial)
        loaded.register(opened)
        return opened


class TokenSession(SecretKeyOps):
    """A logged-in session on one token. Use :func:`open_token` to get one.

    All operations are serialised by one lock for every session of the process
    (``MODULE_LOCK``): python-pkcs11 initialises the module with ``C_Initialize(NULL)``, which
    promises it that no two threads call it at once, so SoftHSM2 takes no locks of its own.
    Two sessions signing in two threads at once crashed it or failed with CKR_GENERAL_ERROR.
    """

    def __init__(self, *, loaded: LoadedModule, session: Any, label: str, serial: bytes) -> None:
        self._loaded = loaded
        self._session = session
        self._label = label
        self._serial = serial
        self._lock = MODULE_LOCK  # see the class docstring
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<TokenSession token={self._label!r} {state}>"

    def __enter__(self) -> TokenSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def label(self) -> str:
        """The token label."""
        return self._label

    @property
    def module(self) -> Path:
        """The PKCS#11 module path."""
        return self._loaded.path

    @property
    def conf(self) -> Path | None:
        """The SoftHSM2 configuration this session was opened on."""
        return self._loaded.conf

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Log out (if this is the last session on the token) and close. Idempotent."""
        with MODULE_LOCK, self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._loaded.logout(self._session.handle, serial=self._serial, token=self._label)
                self._session.close()
            except p11e.PKCS11Error as exc:
                raise translate(exc, action="closing the session", token=self._label) from exc
            finally:
                self._loaded.unregister(self)

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable(
                f"the session on token '{self._label}' is closed",
                hint="open the token again",
                code="keystore.session.closed",
            )

    def _sign_digest(self, key: SignMixin, digest: bytes, *, label: str) -> bytes:
        return self._sign(key, digest, label=label, mechanism=Mechanism.ECDSA)

    def _sign_eddsa(self, key: SignMixin, message: bytes, *, label: str) -> bytes:
        return self._sign(key, message, label=label, mechanism=Mechanism.EDDSA)

    def _sign(self, key: SignMixin, data: bytes, *, label: str, mechanism: Mechanism) -> bytes:
        with self._lock:
            self._check_open()
            try:
                return bytes(key.sign(data, mechanism=mechanism))
            except p11e.PKCS11Error as exc:
                action = f"signing with key '{label}'"
                raise translate(exc, action=action, token=self._label) from exc

    def generate_ec_key(
        self, label: str, *, curve: str = "P-256", key_id: bytes | None = None
    ) -> Pkcs11EcPrivateKey:
        """Generate a non-extractable EC signing key pair in the token.

        Args:
            label: ``CKA_LABEL`` of both objects; must not exist in the token yet.
            curve: ``"P-256"`` or ``"P-384"``.
            key_id: ``CKA_ID`` of both objects (default: 16 random bytes).

        Returns:
            The private key.

        Raises:
            InvalidInput: Unknown curve or bad label.
            Conflict: An object with this label or a key with this id exists.
        """
        if curve not in CURVES:
            raise InvalidInput(f"unsupported curve '{curve}'; use one of {', '.join(CURVES)}")
        return self._generate(
            label, key_id=key_id, key_type=KeyType.EC, curve=CURVES[curve][0], wrap=self._wrap
        )

    def generate_ed25519_key(self, label: str, *, key_id: bytes | None = None) -> Pkcs11Ed25519Key:
        """Generate a non-extractable Ed25519 key pair in the token (CKM_EC_EDWARDS_KEY_PAIR_GEN).

        Args:
            label: ``CKA_LABEL`` of both objects; must not exist in the token yet.
            key_id: ``CKA_ID`` of both objects (default: 16 random bytes).

        Returns:
            The private key (sensitive, never extractable, a token object).

        Raises:
            InvalidInput: Bad label.
            Conflict: An object with this label or a key with this id exists.
            Config: The module does not generate Ed25519 keys.
        """
        return self._generate(
            label,
            key_id=key_id,
            key_type=KeyType.EC_EDWARDS,
            curve=ED25519_CURVE_OID,
            wrap=self._wrap_ed25519,
        )

    def _generate(
        self,
        label: str,
        *,
        key_id: bytes | None,
        key_type: KeyType,
        curve: str,
        wrap: Callable[..., _Key],
    ) -> _Key:
        check_label(label, "a key label", MAX_KEY_LABEL_CHARS)
        key_id = key_id if key_id is not None else secrets.token_bytes(KEY_ID_BYTES)
        edwards = key_type == KeyType.EC_EDWARDS
        with self._lock:
            self._check_open()
            try:
                self._refuse_existing(label, key_id)
                params = self._session.create_domain_parameters(
                    key_type,
                    {Attribute.EC_PARAMS: encode_named_curve_parameters(curve)},
                    local=True,
                )
                public, private = params.generate_keypair(
                    store=True,
                    label=label,
                    id=key_id,
                    capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
                    mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN if edwards else None,
                    public_template=_PUBLIC_TEMPLATE,
                    private_template=_PRIVATE_TEMPLATE,
                )
            except p11e.PKCS11Error as exc:
                raise translate(exc, action="generating a key", token=self._label) from exc
            logger.info("generated %s key %r in token %r", curve, label, self._label)
            return wrap(private, public, label=label, key_id=key_id, owns_session=False)

    def _refuse_existing(self, label: str, key_id: bytes) -> None:
        for attrs, what in (({Attribute.LABEL: label}, "label"), ({Attribute.ID: key_id}, "id")):
            if next(iter(self._session.get_objects(attrs)), None) is not None:
                raise Conflict(
                    f"an object with this {what} exists in token '{self._label}'"
                    + (f": '{label}'" if what == "label" else ""),
                    code="keystore.key.exists",
                )

    def ec_private_key(
        self, *, label: str | None = None, key_id: bytes | None = None
    ) -> Pkcs11EcPrivateKey:
        """Find an EC private key by label and/or id.

        Raises:
            InvalidInput: Neither label nor id given.
            NotFound: No such key, or its public key object is missing.
            Conflict: More than one key matches.
        """
        return self._find_key(label=label, key_id=key_id, owns_session=False, wrap=self._wrap)

    def ed25519_key(
        self, label: str | None = None, *, key_id: bytes | None = None
    ) -> Pkcs11Ed25519Key:
        """Find an Ed25519 private key by label and/or id.

        Raises:
            InvalidInput: Neither label nor id given.
            NotFound: No such Ed25519 key, or its public key object is missing.
            Conflict: More than one key matches.
        """
        return self._find_key(
            label=label,
            key_id=key_id,
            owns_session=False,
            wrap=self._wrap_ed25519,
            key_type=KeyType.EC_EDWARDS,
        )

    def key_from_uri(self, uri: Pkcs11Uri) -> Pkcs11EcPrivateKey:
        """Find the EC private key a PKCS#11 URI names in this token.

        Raises:
            InvalidInput: The URI names another token or a non-private object, or no object.
            NotFound: No such key.
        """
        return self._key_from_uri(uri, owns_session=False)

    def _key_from_uri(self, uri: Pkcs11Uri, *, owns_session: bool) -> Pkcs11EcPrivateKey:
        self._check_uri(uri)
        return self._find_key(
            label=uri.object, key_id=uri.id, owns_session=owns_session, wrap=self._wrap
        )

    def _ed25519_key_from_uri(self, uri: Pkcs11Uri, *, owns_session: bool) -> Pkcs11Ed25519Key:
        self._check_uri(uri)
        return self._find_key(
            label=uri.object,
            key_id=uri.id,
            owns_session=owns_session,
            wrap=self._wrap_ed25519,
            key_type=KeyType.EC_EDWARDS,
        )

    def _check_uri(self, uri: Pkcs11Uri) -> None:
        if uri.token is not None and uri.token != self._label:
            raise InvalidInput(f"the URI names token '{uri.token}', not '{self._label}'")
        if uri.type not in (None, "private"):
            raise InvalidInput(f"the URI names a '{uri.type}' object, not a private key")

    def _find_key(
        self,
        *,
        label: str | None,
        key_id: bytes | None,
        owns_session: bool,
        wrap: Callable[..., _Key],
        key_type: KeyType = KeyType.EC,
    ) -> _Key:
        if label is None and key_id is None:
            raise InvalidInput("name the key by label or id")
        what = f"label '{label}'" if label is not None else f"id {key_id!r}"
        with self._lock:
            self._check_open()
            try:
                private = self._session.get_key(
                    object_class=ObjectClass.PRIVATE_KEY, key_type=key_type, label=label, id=key_id
                )
                found_id = bytes(private.id)
                public = self._session.get_key(
                    object_class=ObjectClass.PUBLIC_KEY,
                    key_type=key_type,
                    id=found_id if found_id else None,
                    label=None if found_id else private.label,
                )
            except p11e.NoSuchKey as exc:
                kind = "Ed25519" if key_type == KeyType.EC_EDWARDS else "EC"
                raise NotFound(
                    f"no {kind} key pair with {what} in token '{self._label}'",
                    code="keystore.key.not_found",
                ) from exc
            except p11e.PKCS11Error as exc:
                raise translate(exc, action=f"looking up key {what}", token=self._label) from exc
            return wrap(
                private, public, label=private.label, key_id=found_id, owns_session=owns_session
            )

    def _wrap(
        self, private: Any, public: Any, *, label: str, key_id: bytes, owns_session: bool
    ) -> Pkcs11EcPrivateKey:
        try:
            loaded = serialization.load_der_public_key(encode_ec_public_key(public))
        except (p11e.PKCS11Error, ValueError) as exc:
            raise Config(f"cannot read the public key of '{label}' from the token") from exc
        if not isinstance(loaded, ec.EllipticCurvePublicKey):
            raise Config(f"key '{label}' is not an EC key")
        uri = Pkcs11Uri(token=self._label, object=label, id=key_id, type="private")
        return Pkcs11EcPrivateKey(
            signer=self,
            handle=private,
            public_key=loaded,
            label=label,
            key_id=key_id,
            uri=uri,
            owns_session=owns_session,
        )

    def _run(self, action: str, op: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """``op(session, *args, token=label, **kwargs)`` under the lock, PKCS#11 errors
        translated (the secret-key operations of :class:`SecretKeyOps`)."""
        with self._lock:
            self._check_open()
            try:
                return op(self._session, *args, token=self._label, **kwargs)
            except p11e.PKCS11Error as exc:
                raise translate(exc, action=action, token=self._label) from exc

    def _wrap_ed25519(
        self, private: Any, public: Any, *, label: str, key_id: bytes, owns_session: bool
    ) -> Pkcs11Ed25519Key:
        try:
            point = bytes(public[Attribute.EC_POINT])
        except p11e.PKCS11Error as exc:
            raise Config(f"cannot read the public key of '{label}' from the token") from exc
        return Pkcs11Ed25519Key(
            signer=self,
            handle=private,
            public_key=ed25519_public_bytes(point, label=label),
            label=label,
            key_id=key_id,
            uri=Pkcs11Uri(token=self._label, object=label, id=key_id, type="private"),
            owns_session=owns_session,
        )


_PRIVATE_TEMPLATE: dict[Attribute, Any] = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.SIGN: True,
    Attribute.DERIVE: False,
    Attribute.DECRYPT: False,
    Attribute.UNWRAP: False,
}
_PUBLIC_TEMPLATE: dict[Attribute, Any] = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: False,
    Attribute.VERIFY: True,
    Attribute.ENCRYPT: False,
    Attribute.WRAP: False,
}
