"""Keys in PKCS#11 tokens (SoftHSM2 by default, any module by path), never on disk in the clear.

Typical use::

    conf = write_softhsm_conf(home / "softhsm2.conf", token_dir=home / "tokens")
    module = find_module()
    init_token(module=module, conf=conf, label="service", so_pin=so_pin, user_pin=pin)
    with open_token(module=module, label="service", pin=pin, conf=conf) as token:
        key = token.generate_ec_key("device-ca", curve="P-384")
        certificate = builder.sign(key, hashes.SHA384())

One process may use several SoftHSM2 configurations one after the other (factory provisioning
of many devices): pass ``conf`` to each call. Switching is refused while sessions on the
active configuration are open.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trustfleet.keystore._conflock import conf_lock
from trustfleet.keystore._lazy import lazy_attributes
from trustfleet.keystore._module import (
    DEFAULT_MODULE_CANDIDATES,
    find_module,
    softhsm_token_dir,
    write_softhsm_conf,
)
from trustfleet.keystore._pin import PinSource, generate_pin, write_pin_file
from trustfleet.keystore._uri import Pkcs11Uri

if TYPE_CHECKING:
    from trustfleet.keystore._awscrt import token_tls_context
    from trustfleet.keystore._eckey import Pkcs11EcPrivateKey
    from trustfleet.keystore._edkey import Pkcs11Ed25519Key
    from trustfleet.keystore._objects import (
        destroy_key_objects,
        destroy_key_pair,
        private_key_labels,
        rename_key_pair,
    )
    from trustfleet.keystore._openkey import open_ed25519_key, open_key
    from trustfleet.keystore._token import TokenSession, init_token, open_token

# The names that need python-pkcs11 load it on first use (PEP 562): a device agent that is
# already enrolled parses URIs and PIN sources but never signs through python-pkcs11, and
# saves the library's memory.
_LAZY = {
    "Pkcs11EcPrivateKey": "trustfleet.keystore._eckey",
    "Pkcs11Ed25519Key": "trustfleet.keystore._edkey",
    "TokenSession": "trustfleet.keystore._token",
    "destroy_key_objects": "trustfleet.keystore._objects",
    "destroy_key_pair": "trustfleet.keystore._objects",
    "private_key_labels": "trustfleet.keystore._objects",
    "rename_key_pair": "trustfleet.keystore._objects",
    "init_token": "trustfleet.keystore._token",
    "open_ed25519_key": "trustfleet.keystore._openkey",
    "open_key": "trustfleet.keystore._openkey",
    "open_token": "trustfleet.keystore._token",
    "token_tls_context": "trustfleet.keystore._awscrt",  # loads awscrt
}


__getattr__ = lazy_attributes(__name__, globals(), _LAZY)


__all__ = [
    "DEFAULT_MODULE_CANDIDATES",
    "PinSource",
    "Pkcs11EcPrivateKey",
    "Pkcs11Ed25519Key",
    "Pkcs11Uri",
    "TokenSession",
    "conf_lock",
    "destroy_key_objects",
    "destroy_key_pair",
    "find_module",
    "generate_pin",
    "init_token",
    "open_ed25519_key",
    "open_key",
    "open_token",
    "private_key_labels",
    "rename_key_pair",
    "softhsm_token_dir",
    "token_tls_context",
    "write_pin_file",
    "write_softhsm_conf",
]
