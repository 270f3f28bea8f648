"""Key objects of a token as a whole: list their labels, destroy them (C_DestroyObject).

Used by :class:`~trustfleet.keystore.TokenSession` (``key_labels``, ``destroy_keys``) for a
device that wipes itself (docs/lifecycle.md, "Decommission and wipe evidence").
"""

from __future__ import annotations

from typing import Any, Final

import pkcs11.exceptions as p11e
from pkcs11 import Attribute, ObjectClass

from trustfleet.keystore._translate import translate

KEY_CLASSES: Final = (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY, ObjectClass.SECRET_KEY)
"""What a token's keys are made of; certificates and data objects are left alone."""


def private_key_labels(session: Any, *, token: str) -> list[str]:
    """The labels of the private keys in the token, sorted, without duplicates."""
    try:
        found = session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY})
        return sorted({str(obj[Attribute.LABEL]) for obj in found})
    except p11e.PKCS11Error as exc:
        raise translate(exc, action="listing the keys", token=token) from exc


def destroy_key_objects(session: Any, *, label: str | None, token: str) -> int:
    """Destroy every key object (or those labelled ``label``); how many went."""
    destroyed = 0
    try:
        for object_class in KEY_CLASSES:
            template: dict[Attribute, Any] = {Attribute.CLASS: object_class}
            if label is not None:
                template[Attribute.LABEL] = label
            for obj in list(session.get_objects(template)):
                obj.destroy()
                destroyed += 1
    except p11e.PKCS11Error as exc:
        raise translate(exc, action="destroying keys", token=token) from exc
    return destroyed
