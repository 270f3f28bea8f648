"""What the sequencer publishes from the entries it just integrated is what the store holds.

``on_each`` hands the entries it integrated to ``publish``, which writes them into the entry
bundles without reading them again; a full re-publish from the store (``trustfleet audit
publish``) must write the same bytes, whichever bundle boundaries the rounds fell on.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

from support.runtimes import opened_home
from trustfleet.services.audit import integrate, on_each, publish, publish_dir
from trustfleet.services.runtime import Runtime

T0 = datetime.now(UTC).replace(microsecond=0)  # the home's certificates are made now


def _append(rt: Runtime, count: int, *, start: int) -> None:
    with rt.uow.begin() as tx:
        for i in range(start, start + count):
            tx.events.append(
                type="device.quarantined", actor="operator:tester@host", subject=f"device:d{i}",
                details={"n": i}, now=T0 + timedelta(milliseconds=i),
            )  # fmt: skip


def _files(base: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(base)): p.read_bytes()
        for p in sorted(base.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def test_incremental_publish_matches_a_full_one(tmp_path: Path) -> None:
    with opened_home(tmp_path / "home", organization="Publish Test", now=T0) as rt:
        start = 0
        for count in (10, 300, 1, 250, 700):  # rounds ending inside and across bundles
            _append(rt, count, start=start)
            start += count
            done = on_each(rt, now=lambda: T0)
            assert done is not None
            assert len(done.entries) == done.checkpoint.size - done.old_size
        base = publish_dir(rt)
        incremental = _files(base)
        assert publish(rt, from_size=0) == done.checkpoint.size
        assert _files(base) == incremental
        assert any(name.startswith("tile/entries/") for name in incremental)


def test_a_round_that_stopped_before_publishing_is_made_good_by_the_next(tmp_path: Path) -> None:
    """Regression: the next round published from the store's previous checkpoint, so the tiles
    of a checkpoint committed by a round that then died (a crash) were never written."""
    with opened_home(tmp_path / "home", organization="Publish Test", now=T0) as rt:
        _append(rt, 300, start=0)
        assert on_each(rt, now=lambda: T0) is not None
        base = publish_dir(rt)
        _append(rt, 400, start=300)
        assert integrate(rt, now=T0) is not None  # committed, then "crashed" before publish
        _append(rt, 5, start=700)
        done = on_each(rt, now=lambda: T0)
        assert done is not None
        after_crash = _files(base)
        assert publish(rt, from_size=0) == done.checkpoint.size
        assert _files(base) == after_crash  # nothing was missing
        shutil.rmtree(base)  # the whole copy lost: the next round, even without entries, redoes it
        assert on_each(rt, now=lambda: T0) is None
        redone = _files(base)  # without the older partial tiles a growing copy keeps
        assert redone and all(after_crash[name] == data for name, data in redone.items())
        assert redone["checkpoint"] == after_crash["checkpoint"]
