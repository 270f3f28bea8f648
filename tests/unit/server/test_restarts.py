"""The restart policy of ``server run`` (pure): backoff, budget per window, recovery."""

from __future__ import annotations

import pytest

from trustfleet.server._restarts import KindRestarts, RestartPolicy

POLICY = RestartPolicy(backoff_s=0.5, backoff_max_s=4.0, budget=3, window_s=60.0)


def test_backoff_doubles_per_crash_in_the_window_and_is_bounded() -> None:
    kind = KindRestarts(POLICY)
    delays = [kind.crashed(float(t)).delay_s for t in range(3)]
    assert delays == [0.5, 1.0, 2.0]
    assert not kind.crashlooping


def test_crashes_beyond_the_budget_degrade_once_and_never_give_up() -> None:
    kind = KindRestarts(POLICY)
    changes = [kind.crashed(float(t)).change for t in range(6)]
    assert changes == [None, None, None, "degraded", None, None]
    assert kind.crashlooping
    assert kind.crashed(7.0).delay_s == POLICY.backoff_max_s  # retried slowly, forever


def test_crashes_older_than_the_window_are_forgotten() -> None:
    kind = KindRestarts(POLICY)
    for t in (0.0, 1.0, 2.0):
        kind.crashed(t)
    crash = kind.crashed(100.0)
    assert crash.crashes_in_window == 1 and crash.change is None
    assert crash.delay_s == POLICY.backoff_s


@pytest.mark.parametrize(
    ("up_for_s", "recovered"),
    [(59.0, False), (60.0, True)],
    ids=["up_less_than_a_window", "up_a_whole_window"],
)
def test_a_crashlooping_kind_recovers_after_a_whole_window_up(
    up_for_s: float, recovered: bool
) -> None:
    kind = KindRestarts(POLICY)
    for t in range(4):
        kind.crashed(float(t))
    assert kind.recovered(10.0 + up_for_s, up_since=10.0) is recovered
    assert kind.crashlooping is not recovered
