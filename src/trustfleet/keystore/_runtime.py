"""Process-wide state of loaded PKCS#11 modules: initialisation, configuration switching, login.

A PKCS#11 module has one global state per process: ``dlopen`` returns the same handle to
python-pkcs11 and to ctypes, ``C_Initialize``/``C_Finalize`` apply to the whole process, and
login state is shared by every session on a token. So TrustFleet keeps exactly one
:class:`LoadedModule` per module path, for the life of the process (python-pkcs11 finalises and
unloads the module when its ``lib`` object is garbage collected, so it must never be dropped).

Scheme:

* python-pkcs11's ``lib`` owns ``C_Initialize``/``C_Finalize``. The ctypes layer calls
  ``C_Initialize`` too, but only after ``lib`` did, so it always sees
  ``CKR_CRYPTOKI_ALREADY_INITIALIZED``, which it tolerates.
* SoftHSM2 reads ``SOFTHSM2_CONF`` only inside ``C_Initialize``. A configuration is *active*
  from one initialisation to the next finalisation. Switching to another configuration is
  ``C_Finalize``, set ``SOFTHSM2_CONF``, ``C_Initialize``, then the previous environment value
  is restored, so child processes and other code do not inherit it.
* A switch is refused with :class:`~trustfleet.errors.Config` while any
  :class:`~trustfleet.keystore.TokenSession` on the active configuration is open: finalising
  would invalidate its session handles. Sessions (and keys holding them) that were dropped
  without ``close()`` stop counting once garbage collected. Every call that needs a
  configuration holds the module lock from the switch until its session is registered, so no
  other thread can switch under it.
* Login is per token for the whole process. The first session on a token logs in; later
  sessions on the same token prove the same PIN against an HMAC kept in memory (keyed with a
  random per-process key), and the last one to close logs out.
* SoftHSM2 rewrites ``token.object`` on every ``C_Login``, and another process that lists the
  slots or logs in at that moment reads a half-written file (``CKR_GENERAL_ERROR`` or "no such
  token"). So every process that looks up or logs in to a token of a configuration holds
  :func:`conf_lock` (an ``flock`` on ``<conf>.lock``, beside the configuration) meanwhile:
  :func:`use_module` takes it (also around ``C_Initialize``, which reads every token), and
  so does the awscrt TLS context that logs in by itself.
  Signing on an open session needs no lock across processes.
"""

from __future__ import annotations

import gc
import hashlib
import hmac
import logging
import os
import secrets
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pkcs11
import pkcs11.exceptions as p11e

from trustfleet.errors import Config, Conflict
from trustfleet.keystore._conflock import conf_lock
from trustfleet.keystore._cryptoki import (
    CKR_USER_ALREADY_LOGGED_IN,
    CKU_USER,
    CkError,
    Cryptoki,
)
from trustfleet.keystore._translate import login_failed, translate

if TYPE_CHECKING:
    from pkcs11._pkcs11 import lib as P11Lib

logger = logging.getLogger(__name__)

CONF_ENV = "SOFTHSM2_CONF"

MODULE_LOCK = threading.RLock()
"""Held while a module is loaded, switched, or a session on it opened or closed."""
_MODULES: dict[Path, LoadedModule] = {}


@dataclass(eq=False)
class _Login:
    count: int
    mac: bytes


@dataclass(eq=False)
class LoadedModule:
    """One PKCS#11 module loaded into this process.

    Attributes:
        path: The module path.
        lib: python-pkcs11's handle (owns initialisation).
        ck: Direct ctypes access to the same function list.
        conf: The active SoftHSM2 configuration, or None for the process environment.
    """

    path: Path
    lib: P11Lib
    ck: Cryptoki
    conf: Path | None
    _sessions: weakref.WeakSet[object] = field(default_factory=weakref.WeakSet)
    _logins: dict[bytes, _Login] = field(default_factory=dict)
    _mac_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))

    @property
    def open_sessions(self) -> int:
        """How many TrustFleet sessions on this module are open."""
        return len(self._sessions)

    def register(self, owner: object) -> None:
        """Count ``owner`` as an open session (weakly: a lost session does not block)."""
        self._sessions.add(owner)

    def unregister(self, owner: object) -> None:
        """Stop counting ``owner``."""
        self._sessions.discard(owner)

    def _mac(self, pin: str) -> bytes:
        return hmac.new(self._mac_key, pin.encode("utf-8"), hashlib.sha256).digest()

    def login(self, handle: int, *, serial: bytes, pin: str, token: str) -> None:
        """Log the process in to a token as the user, or check the PIN of the existing login.

        Raises:
            PermissionDenied: The PIN is wrong.
            Conflict: The token was logged in by code outside TrustFleet.
        """
        record = self._logins.get(serial)
        if record is not None:
            if not hmac.compare_digest(record.mac, self._mac(pin)):
                logger.warning("login refused for token %r: PIN does not match", token)
                raise login_failed(token)
            record.count += 1
            return
        try:
            self.ck.login(handle, user_type=CKU_USER, pin=pin)
        except CkError as exc:
            if exc.rv == CKR_USER_ALREADY_LOGGED_IN:
                raise Conflict(
                    f"token '{token}' is logged in by another component of this process",
                    hint="open tokens only through trustfleet.keystore",
                ) from exc
            logger.warning("login refused for token %r (%s)", token, exc.function)
            raise translate(exc, action="logging in", token=token) from exc
        self._logins[serial] = _Login(count=1, mac=self._mac(pin))

    def logout(self, handle: int, *, serial: bytes, token: str) -> None:
        """Release one login; the last one logs the process out of the token."""
        record = self._logins.get(serial)
        if record is None:
            return
        record.count -= 1
        if record.count > 0:
            return
        del self._logins[serial]
        try:
            self.ck.logout(handle)
        except CkError as exc:
            raise translate(exc, action="logging out", token=token) from exc


def _with_conf(conf: Path | None, action: Callable[[], None]) -> None:
    """Run ``action`` (which calls C_Initialize) with ``SOFTHSM2_CONF`` set to ``conf``."""
    if conf is None:
        action()
        return
    previous = os.environ.get(CONF_ENV)
    os.environ[CONF_ENV] = str(conf)
    try:
        action()
    finally:
        if previous is None:
            del os.environ[CONF_ENV]
        else:
            os.environ[CONF_ENV] = previous


def _load(module: Path, conf: Path | None) -> LoadedModule:
    holder: list[P11Lib] = []
    try:
        _with_conf(conf, lambda: holder.append(pkcs11.lib(str(module))))
    except p11e.PKCS11Error as exc:
        raise Config(
            f"cannot load and initialise PKCS#11 module '{module}' ({type(exc).__name__})",
            hint="check the module path; another component may have initialised it already",
            code="keystore.module.load",
        ) from exc
    ck = Cryptoki(module)
    try:
        ck.initialize()
    except CkError as exc:
        raise translate(exc, action="initialising the module") from exc
    logger.debug("loaded PKCS#11 module %s with conf %s", module, conf)
    return LoadedModule(path=module, lib=holder[0], ck=ck, conf=conf)


def _switch(loaded: LoadedModule, conf: Path) -> None:
    if loaded.open_sessions:
        gc.collect()  # sessions only reachable through reference cycles do not count
    if loaded.open_sessions:
        raise Config(
            f"cannot switch PKCS#11 module '{loaded.path}' to configuration '{conf}': "
            f"{loaded.open_sessions} session(s) on configuration '{loaded.conf}' are still open",
            hint="close every TokenSession (and keys from open_key) on the other configuration",
            code="keystore.conf.busy",
        )
    try:
        loaded.lib.finalize()
        _with_conf(conf, loaded.lib.initialize)
    except p11e.PKCS11Error as exc:
        raise translate(exc, action=f"switching to configuration '{conf}'") from exc
    loaded._logins.clear()
    loaded.conf = conf
    logger.debug("PKCS#11 module %s switched to conf %s", loaded.path, conf)


@contextmanager
def use_module(module: Path, conf: Path | None) -> Iterator[LoadedModule]:
    """Hold the module lock with ``conf`` active (loading or switching as needed).

    Args:
        module: The PKCS#11 module path.
        conf: The SoftHSM2 configuration to make active, or None to keep the active one
            (or the process environment's, on first load).

    Yields:
        The loaded module; the module lock and :func:`conf_lock` of the active
        configuration are held until the block ends.

    Raises:
        Config: Switching is needed but sessions on the other configuration are open.
    """
    module = module.resolve()
    conf = conf.resolve() if conf is not None else None
    with MODULE_LOCK:
        loaded = _MODULES.get(module)
        # C_Initialize reads every token's token.object too, so loading and switching hold
        # the configuration's lock like a lookup does.
        if loaded is None:
            with conf_lock(conf):
                loaded = _MODULES[module] = _load(module, conf)
        elif conf is not None and conf != loaded.conf:
            with conf_lock(conf):
                _switch(loaded, conf)
        with conf_lock(loaded.conf):
            yield loaded


def active_conf(module: Path) -> Path | None:
    """The configuration active on a loaded module (None if not loaded or the environment's)."""
    with MODULE_LOCK:
        loaded = _MODULES.get(module.resolve())
        return loaded.conf if loaded is not None else None
