"""The refusal throttle (pure): bursts, windows, keys, bounded memory, nothing lost."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trustfleet.services.refusals import ANONYMOUS, Refusal, RefusalPolicy, RefusalThrottle

T0 = datetime(2030, 1, 1, tzinfo=UTC)  # a pure function of its inputs: any instant will do
POLICY = RefusalPolicy(window_s=60.0, burst=2, max_keys=3)


def _refusal(
    source: str, *, at_s: float, code: str = "est.auth.missing", device: str = ""
) -> Refusal:
    return Refusal(
        type="enrollment.refused",
        actor=f"device:{device}" if device else ANONYMOUS,
        subject=f"device:{device}" if device else "unknown",
        code=code,
        at=T0 + timedelta(seconds=at_s),
        details={"mode": "enroll", "code": code},
        source=source,
    )


@dataclass(frozen=True)
class Case:
    refusals: list[Refusal]
    written: int  # admitted at once
    summaries: list[int]  # counts of the summaries once every window has ended


CASES = {
    "flood-from-one-source": Case([_refusal("a", at_s=i / 10) for i in range(500)], 2, [498]),
    "a-new-window-starts-a-new-burst": Case(
        [_refusal("a", at_s=i) for i in range(4)] + [_refusal("a", at_s=61 + i) for i in range(3)],
        4,
        [2, 1],
    ),
    "sources-are-separate": Case(
        [_refusal(s, at_s=0) for s in ("a", "b", "a", "b", "a")], 4, [1]
    ),
    "reasons-are-separate": Case(
        [_refusal("a", at_s=0, code=c) for c in ("x.one", "x.two", "x.one", "x.two")], 4, []
    ),
    "a-device-is-one-key-from-any-source": Case(
        [_refusal(s, at_s=0, device="dev-00000001") for s in ("a", "b", "c", "d")], 2, [2]
    ),
    "past-max-keys-new-sources-share-one-key": Case(
        [_refusal(f"10.0.0.{i}", at_s=0) for i in range(10)], 3 + 2, [5]
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_throttle(case: Case) -> None:
    throttle = RefusalThrottle(POLICY)
    written = 0
    summaries = []
    for refusal in case.refusals:
        written += throttle.admit(refusal)
        summaries += throttle.due(now=refusal.at)
        assert throttle.tracked_keys <= POLICY.max_keys + 1
    summaries += throttle.due(now=T0 + timedelta(days=1))
    assert written == case.written
    assert [s.count for s in summaries] == case.summaries
    assert throttle.tracked_keys == 0


def test_summary_waits_for_the_end_of_its_window() -> None:
    throttle = RefusalThrottle(POLICY)
    for i in range(5):
        throttle.admit(_refusal("a", at_s=i))
    assert throttle.due(now=T0 + timedelta(seconds=59)) == []
    (summary,) = throttle.due(now=T0 + timedelta(seconds=60))
    assert (summary.count, summary.first_at, summary.last_at) == (
        3,
        T0 + timedelta(seconds=2),
        T0 + timedelta(seconds=4),
    )
    assert summary.first.source == "a"


def test_everything_flushes_open_windows() -> None:
    throttle = RefusalThrottle(POLICY)
    for i in range(3):
        throttle.admit(_refusal("a", at_s=i))
    assert [s.count for s in throttle.due(now=T0, everything=True)] == [1]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from("abcdefg"), st.sampled_from(["x.one", "x.two"]), st.floats(0, 5)),
        max_size=300,
    )
)
def test_nothing_is_lost_and_memory_is_bounded(steps: list[tuple[str, str, float]]) -> None:
    """Every refusal is either written or counted in exactly one summary."""
    throttle = RefusalThrottle(POLICY)
    at_s = 0.0
    written = counted = 0
    for source, code, gap in steps:
        at_s += gap
        written += throttle.admit(_refusal(source, at_s=at_s, code=code))
        counted += sum(s.count for s in throttle.due(now=T0 + timedelta(seconds=at_s)))
        assert throttle.tracked_keys <= POLICY.max_keys + 1
    counted += sum(s.count for s in throttle.due(now=T0, everything=True))
    assert written + counted == len(steps)
