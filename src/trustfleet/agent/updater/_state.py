"""The updater's persistent state (``ota-state.json``), written atomically at every transition.

``floor`` is the anti-rollback floor: no release below it is installed. It rises only when an
update is committed. (On hardware it belongs in a monotonic counter: TPM NV or an eFuse bank.)
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from trustfleet.agent.platform._files import read_json, write_json
from trustfleet.agent.platform.bootenv import SLOTS, Slot
from trustfleet.errors import InvalidInput
from trustfleet.ota.versions import parse_version

__all__ = ["OUTCOMES", "STATES", "OtaState", "load_state", "save_state"]

logger = logging.getLogger(__name__)

State = Literal[
    "idle",
    "checking",
    "downloading",
    "installing",
    "installed",
    "rebooting",
    "trial",
    "committed",
    "failed",
    "rolled_back",
    "refused",
    "up_to_date",
]
STATES: tuple[str, ...] = State.__args__  # type: ignore[attr-defined]  # Literal's members
OUTCOMES = frozenset({"idle", "committed", "failed", "rolled_back", "refused", "up_to_date"})
"""States from which a new update may start."""

_SCHEMA = "trustfleet.ota-state/1"
_MAX_STATE_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class OtaState:
    """What the updater has done, and the version floor."""

    state: State = "idle"
    floor: str
    installed_version: str
    campaign: str | None = None
    version: str | None = None
    from_version: str | None = None
    target_slot: Slot | None = None
    from_slot: Slot | None = None
    delta: bool | None = None
    reason: str = ""
    code: str = ""
    updated_at: str = ""

    @property
    def in_progress(self) -> bool:
        """Whether an update is between its start and its outcome."""
        return self.state not in OUTCOMES

    def moved(self, state: State, *, now: datetime, **changes: Any) -> OtaState:
        """A copy in ``state`` (reason and code cleared unless given)."""
        changes.setdefault("reason", "")
        changes.setdefault("code", "")
        return replace(self, state=state, updated_at=now.isoformat(), **changes)


def save_state(path: Path, state: OtaState) -> None:
    """Write the state durably (temporary file, fsync, rename)."""
    write_json(path, {"schema": _SCHEMA, **asdict(state)})


def load_state(path: Path, *, booted_version: str) -> OtaState:
    """The state in ``path``; a fresh one (floor = the booted version) if missing or corrupt."""
    doc = read_json(path, max_bytes=_MAX_STATE_BYTES)
    fresh = OtaState(floor=booted_version, installed_version=booted_version)
    if doc is None:
        if path.exists():
            logger.warning("%s is unreadable: starting from the booted release", path)
        return fresh
    state = _parse(doc)
    if state is None:
        logger.warning("%s has invalid values: starting from the booted release", path)
        return fresh
    return state


_TEXT = (str,)
_TEXT_OR_NONE = (str, type(None))
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "state": _TEXT,
    "floor": _TEXT,
    "installed_version": _TEXT,
    "campaign": _TEXT_OR_NONE,
    "version": _TEXT_OR_NONE,
    "from_version": _TEXT_OR_NONE,
    "target_slot": _TEXT_OR_NONE,
    "from_slot": _TEXT_OR_NONE,
    "delta": (bool, type(None)),
    "reason": _TEXT,
    "code": _TEXT,
    "updated_at": _TEXT,
}
"""The JSON types each field of :class:`OtaState` may hold (a table test keeps it complete)."""


def _parse(doc: dict[str, Any]) -> OtaState | None:
    if doc.get("schema") != _SCHEMA or doc.get("state") not in STATES:
        return None
    values = {k: v for k, v in doc.items() if k in _FIELD_TYPES}
    if not all(isinstance(v, _FIELD_TYPES[k]) for k, v in values.items()):
        return None
    try:
        state = OtaState(**values)
        parse_version(state.floor)
        parse_version(state.installed_version)
    except (TypeError, InvalidInput):  # a missing field or a malformed version: start fresh
        return None
    slots_ok = {state.target_slot, state.from_slot}.issubset((None, *SLOTS))
    return state if slots_ok else None
