"""The updater's state file (``agent/updater/_state.py``): what it keeps, what it refuses to
load, and the fresh state it falls back to."""

from __future__ import annotations

import dataclasses
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from trustfleet.agent.updater._state import (
    _FIELD_TYPES,
    OUTCOMES,
    STATES,
    OtaState,
    load_state,
    save_state,
)

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
MAX_STATE_BYTES = 16 * 1024
FRESH = OtaState(floor="1.0.0", installed_version="1.0.0")


def _busy() -> OtaState:
    return OtaState(
        state="rebooting",
        floor="1.2.0",
        installed_version="1.3.0",
        campaign="cmp-1",
        version="2.0.0",
        from_version="1.3.0",
        target_slot="b",
        from_slot="a",
        delta=True,
        reason="why",
        code="ota.x",
        updated_at=NOW.isoformat(),
    )


def _doc(**changes: Any) -> dict[str, Any]:
    doc = {"schema": "trustfleet.ota-state/1", **dataclasses.asdict(_busy())}
    doc.update(changes)
    return doc


def _load(path: Path, doc: dict[str, Any]) -> OtaState:
    path.write_text(json.dumps(doc))
    return load_state(path, booted_version="1.0.0")


def test_a_fresh_state_is_idle_with_empty_texts() -> None:
    assert dataclasses.asdict(FRESH) == {
        "state": "idle",
        "floor": "1.0.0",
        "installed_version": "1.0.0",
        "campaign": None,
        "version": None,
        "from_version": None,
        "target_slot": None,
        "from_slot": None,
        "delta": None,
        "reason": "",
        "code": "",
        "updated_at": "",
    }


def test_the_states_and_the_outcomes_a_new_update_may_start_from() -> None:
    assert STATES == (
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
    )
    assert frozenset({"idle", "committed", "failed", "rolled_back", "refused", "up_to_date"}) == (
        OUTCOMES
    )


@pytest.mark.parametrize("state", STATES)
def test_in_progress_is_every_state_but_the_outcomes(state: Any) -> None:
    expected = state not in {"idle", "committed", "failed", "rolled_back", "refused", "up_to_date"}
    assert OtaState(state=state, floor="1.0.0", installed_version="1.0.0").in_progress is expected


def test_a_move_clears_reason_and_code_and_stamps_the_time() -> None:
    moved = _busy().moved("installed", now=NOW.replace(hour=13))
    assert dataclasses.replace(_busy(), state="installed", reason="", code="") == (
        dataclasses.replace(moved, updated_at=NOW.isoformat())
    )
    assert moved.updated_at == "2026-11-22T13:00:00+00:00"


def test_a_move_keeps_a_given_reason_and_code_and_other_changes() -> None:
    moved = _busy().moved("failed", now=NOW, reason="r", code="c", version="3.0.0")
    assert (moved.state, moved.reason, moved.code, moved.version) == ("failed", "r", "c", "3.0.0")
    assert moved.floor == "1.2.0"


def test_a_state_is_an_immutable_keyword_only_value() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        FRESH.state = "failed"  # type: ignore[misc]
    assert not hasattr(FRESH, "__dict__")
    with pytest.raises(TypeError):
        OtaState("idle", "1.0.0", "1.0.0")  # type: ignore[misc]


def test_a_saved_state_loads_back_equal(tmp_path: Path) -> None:
    path = tmp_path / "ota-state.json"
    save_state(path, _busy())
    doc = json.loads(path.read_text())
    assert doc == _doc()
    assert load_state(path, booted_version="9.9.9") == _busy()


@pytest.mark.parametrize("slot", ["a", "b"])
def test_either_slot_loads(tmp_path: Path, slot: str) -> None:
    loaded = _load(tmp_path / "s.json", _doc(target_slot=slot, from_slot=slot))
    assert (loaded.target_slot, loaded.from_slot) == (slot, slot)


def test_unknown_keys_are_ignored(tmp_path: Path) -> None:
    assert _load(tmp_path / "s.json", _doc(future_field=1)) == _busy()


def test_a_missing_file_gives_the_fresh_state_silently(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        assert load_state(tmp_path / "none.json", booted_version="1.0.0") == FRESH
    assert caplog.records == []


@pytest.mark.parametrize(
    "text", ["", "{", "[]", '"idle"', "\xff"], ids=["empty", "truncated", "list", "str", "latin1"]
)
def test_an_unreadable_file_gives_the_fresh_state_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str
) -> None:
    path = tmp_path / "s.json"
    path.write_bytes(text.encode("latin-1"))
    with caplog.at_level(logging.WARNING):
        assert load_state(path, booted_version="1.0.0") == FRESH
    assert [r.levelno for r in caplog.records] == [logging.WARNING]


def test_a_file_at_the_size_bound_loads_and_one_byte_more_does_not(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    base = len(json.dumps(_doc(reason="")).encode())
    at_bound = _doc(reason="r" * (MAX_STATE_BYTES - base))
    path.write_text(json.dumps(at_bound))
    assert path.stat().st_size == MAX_STATE_BYTES
    assert load_state(path, booted_version="1.0.0").reason == "r" * (MAX_STATE_BYTES - base)
    path.write_text(json.dumps(_doc(reason="r" * (MAX_STATE_BYTES - base + 1))))
    assert load_state(path, booted_version="1.0.0") == FRESH


INVALID = {
    "no-schema": {"schema": None},
    "other-schema": {"schema": "trustfleet.ota-state/2"},
    "unknown-state": {"state": "exploded"},
    "no-state": {"state": None},
    "floor-not-a-version": {"floor": "1.0"},
    "floor-not-text": {"floor": 1},
    "installed-not-a-version": {"installed_version": "x"},
    "target-slot-c": {"target_slot": "c"},
    "from-slot-c": {"from_slot": "c"},
    "unexpected-argument-shape": {"floor": None, "installed_version": None},
    # Regression: these were loaded whatever their JSON type, and a list or an object then
    # reached the status report and the log lines.
    "campaign-not-text": {"campaign": ["cmp-1"]},
    "reason-not-text": {"reason": {"why": 1}},
    "reason-null": {"reason": None},
    "code-not-text": {"code": 7},
    "version-not-text": {"version": 2},
    "from-version-not-text": {"from_version": ["1.3.0"]},
    "target-slot-not-text": {"target_slot": 1},
    "delta-not-bool": {"delta": "yes"},
    "updated-at-not-text": {"updated_at": 0},
}


@pytest.mark.parametrize("changes", INVALID.values(), ids=INVALID.keys())
def test_invalid_values_give_the_fresh_state_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, changes: dict[str, Any]
) -> None:
    with caplog.at_level(logging.WARNING):
        assert _load(tmp_path / "s.json", _doc(**changes)) == FRESH
    assert [r.levelno for r in caplog.records] == [logging.WARNING]


def test_every_field_of_the_state_has_a_json_type_check() -> None:
    assert set(_FIELD_TYPES) == {f.name for f in dataclasses.fields(OtaState)}


def test_a_campaign_of_null_and_a_delta_of_false_load(tmp_path: Path) -> None:
    state = _load(tmp_path / "s.json", _doc(campaign=None, delta=False))
    assert (state.campaign, state.delta) == (None, False)


def test_a_missing_required_field_gives_the_fresh_state(tmp_path: Path) -> None:
    doc = _doc()
    del doc["floor"]
    assert _load(tmp_path / "s.json", doc) == FRESH
