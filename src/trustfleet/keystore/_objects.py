"""Key pairs in a token by label: list, rename, destroy (a device's re-key, docs/lifecycle.md);
every key object at once (a device's wipe).

A key pair is the private and the public key object that share a ``CKA_LABEL``
(:meth:`TokenSession.generate_ec_key` gives both the same label and id). Renaming changes
``CKA_LABEL`` of both (``C_SetAttributeValue``); destroying removes both
(``C_DestroyObject``). Each function holds the module lock like every session operation.
"""

from __future__ import annotations

import logging
from typing import Any

import pkcs11.exceptions as p11e
from pkcs11 import Attribute, ObjectClass

from trustfleet.errors import Conflict, NotFound
from trustfleet.keystore._cryptoki import MAX_KEY_LABEL_CHARS, check_label
from trustfleet.keystore._token import TokenSession
from trustfleet.keystore._translate import translate

__all__ = ["destroy_key_objects", "destroy_key_pair", "private_key_labels", "rename_key_pair"]

logger = logging.getLogger(__name__)

_KEY_CLASSES = (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY)
_MAX_OBJECTS = 1024  # bound on what one listing reads from a token


def private_key_labels(session: TokenSession) -> list[str]:
    """The labels of the token's private key objects, sorted (at most 1024 are read).

    Raises:
        Unavailable: The session is closed or the token failed.
    """
    with session._lock:
        session._check_open()
        try:
            found = session._session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY})
            labels = []
            for obj in found:
                labels.append(str(obj.label or ""))
                if len(labels) >= _MAX_OBJECTS:
                    break
        except p11e.PKCS11Error as exc:
            raise translate(exc, action="listing keys", token=session.label) from exc
    return sorted(labels)


def rename_key_pair(session: TokenSession, label: str, new_label: str) -> None:
    """Give the key pair ``label`` the label ``new_label`` (both of its objects).

    Raises:
        InvalidInput: ``new_label`` is not a valid label.
        NotFound: No object has ``label``.
        Conflict: An object with ``new_label`` exists already.
    """
    check_label(new_label, "a key label", MAX_KEY_LABEL_CHARS)
    with session._lock:
        session._check_open()
        try:
            if _objects(session, new_label):
                raise Conflict(
                    f"an object labelled '{new_label}' exists in token '{session.label}'",
                    code="keystore.key.exists",
                )
            objects = _objects(session, label)
            if not objects:
                raise NotFound(
                    f"no key labelled '{label}' in token '{session.label}'",
                    code="keystore.key.not_found",
                )
            for obj in objects:
                obj[Attribute.LABEL] = new_label
        except p11e.PKCS11Error as exc:
            raise translate(exc, action=f"renaming key '{label}'", token=session.label) from exc
    logger.info("renamed key %r to %r in token %r", label, new_label, session.label)


def destroy_key_pair(session: TokenSession, label: str) -> int:
    """Destroy the private and public key objects labelled ``label``; how many were destroyed.

    Destroying nothing is not an error (0): a re-run after a crash finds the work done.

    Raises:
        Unavailable: The session is closed or the token failed.
    """
    with session._lock:
        session._check_open()
        try:
            objects = _objects(session, label)
            for obj in objects:
                obj.destroy()
        except p11e.PKCS11Error as exc:
            raise translate(exc, action=f"destroying key '{label}'", token=session.label) from exc
    if objects:
        logger.info("destroyed key %r (%d objects) in token %r", label, len(objects), session.label)
    return len(objects)


def destroy_key_objects(session: TokenSession) -> int:
    """Destroy every key object of the token (private, public and secret keys); how many.

    Certificates and data objects stay. Keys opened from the session stop working.

    Raises:
        Unavailable: The session is closed or the token failed.
    """
    destroyed = 0
    with session._lock:
        session._check_open()
        try:
            for cls in (*_KEY_CLASSES, ObjectClass.SECRET_KEY):
                for obj in list(session._session.get_objects({Attribute.CLASS: cls})):
                    obj.destroy()
                    destroyed += 1
        except p11e.PKCS11Error as exc:
            raise translate(exc, action="destroying every key", token=session.label) from exc
    logger.info("destroyed every key (%d objects) in token %r", destroyed, session.label)
    return destroyed


def _objects(session: TokenSession, label: str) -> list[Any]:
    found: list[Any] = []
    for cls in _KEY_CLASSES:
        query = {Attribute.CLASS: cls, Attribute.LABEL: label}
        found.extend(session._session.get_objects(query))
    return found
