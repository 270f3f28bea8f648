"""Campaign rules pinned at every boundary: waves, the failure threshold, timeouts, targets.

Each threshold is tested at, just below and just above its limit, with the exact error code
(and the exact hint where the hint tells the operator what to type instead).
"""

from __future__ import annotations

import dataclasses

import pytest

from trustfleet.errors import InvalidInput
from trustfleet.ota import campaign_rules as rules

WAVES_HINT = "give cumulative percentages ending at 100, e.g. 1,10,50,100%"
PARSE_WAVES_HINT = "give cumulative percentages ending at 100, e.g. --waves 1,10,50,100%"
RATE_HINT = "give a percentage such as 5% (or a fraction such as 0.05)"
DURATION_HINT = "use a number with s, m, h or d, e.g. 30m"


def _refused(call: object, *args: object) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        call(*args)  # type: ignore[operator]
    return caught.value


# --- the state sets -----------------------------------------------------------------------


def test_state_sets_are_exact() -> None:
    assert rules.CAMPAIGN_STATES == ("running", "paused", "aborted", "halted", "completed")
    in_flight = ["notified", "checking", "downloading", "installing", "rebooting"]
    success, failure = ["committed", "up_to_date"], ["failed", "rolled_back", "refused"]
    assert ("pending", *in_flight, *success, *failure, "timed_out") == rules.DEVICE_UPDATE_STATES
    assert set(in_flight[1:] + success + failure) == rules.REPORT_STATES
    assert set(in_flight) == rules.IN_FLIGHT_STATES
    assert set(success) == rules.SUCCESS_STATES
    assert {*failure, "timed_out"} == rules.FAILURE_STATES
    assert {*success, *failure, "timed_out"} == rules.FINISHED_STATES
    assert {"ota.no_boot_chain"} == rules.EXCLUDING_CODES


# --- waves --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "waves",
    [
        (100,),
        (0.5, 100),
        (1, 100),
        (99.99, 100),
        tuple(range(5, 101, 5)),  # exactly MAX_WAVES
    ],
)
def test_good_waves_are_returned_as_floats(waves: tuple[float, ...]) -> None:
    checked = rules.check_waves(waves)
    assert checked == tuple(float(w) for w in waves)
    assert all(type(w) is float for w in checked)


def test_max_waves_is_20() -> None:
    assert rules.MAX_WAVES == 20
    assert len(rules.check_waves(tuple(range(5, 101, 5)))) == 20
    over = _refused(rules.check_waves, (0.5, *range(5, 101, 5)))  # 21 waves
    assert over.code == "campaign.waves" and over.hint == WAVES_HINT


@pytest.mark.parametrize(
    "waves",
    [
        (),
        (0, 100),
        (-1, 100),
        (50, 50, 100),
        (60, 50, 100),
        (50,),
        (99.99,),
        (50, 100.5),
        (100, 100.5),
        (100.5,),
        (float("nan"), 100),
        (50, float("inf")),
        (100, 50),
    ],
)
def test_bad_waves_are_campaign_waves(waves: tuple[float, ...]) -> None:
    error = _refused(rules.check_waves, waves)
    assert error.code == "campaign.waves"
    assert error.hint == WAVES_HINT


def test_parse_waves_reads_percent_signs_and_spaces() -> None:
    assert rules.parse_waves("1,10,50,100%") == (1.0, 10.0, 50.0, 100.0)
    assert rules.parse_waves(" 5% , 100 %") == (5.0, 100.0)


def test_wave_text_is_bounded_at_200_characters() -> None:
    at_limit = " " * 197 + "100"
    assert len(at_limit) == 200
    assert rules.parse_waves(at_limit) == (100.0,)
    error = _refused(rules.parse_waves, " " + at_limit)
    assert error.code == "campaign.waves" and error.hint == PARSE_WAVES_HINT


@pytest.mark.parametrize("text", ["", "a,100", "10;100", "10,,100", "10 50 100"])
def test_unreadable_wave_text_is_campaign_waves(text: str) -> None:
    error = _refused(rules.parse_waves, text)
    assert error.code == "campaign.waves"
    assert error.hint == PARSE_WAVES_HINT


@pytest.mark.parametrize(
    ("count", "waves", "expected"),
    [
        (0, (50, 100), (0, 0)),
        (1, (100,), (1,)),
        (1, (50, 100), (1, 1)),
        (2, (50, 100), (1, 2)),
        (3, (50, 100), (2, 3)),  # ceil(1.5)
        (4, (50, 100), (2, 4)),
        (10, (10, 50, 100), (1, 5, 10)),
        (18, (10, 50, 100), (2, 9, 18)),
        (100, (1, 2, 100), (1, 2, 100)),
        (200, (0.5, 100), (1, 200)),
        (201, (0.5, 100), (2, 201)),
        (5, (1, 2, 3, 100), (1, 2, 3, 5)),  # at least one more device per wave
        (3, (1, 10, 50, 100), (1, 2, 3, 3)),  # fewer devices than waves: the last is empty
        (1000, (33.3, 66.6, 100), (333, 666, 1000)),
        (3, (33.3, 66.6, 100), (1, 2, 3)),
        (1000, (0.1, 100), (1, 1000)),  # 0.1 % is read as the decimal, not the binary float
        (1000, (1.1, 100), (11, 1000)),
    ],
)
def test_plan_waves_exact(count: int, waves: tuple[float, ...], expected: tuple[int, ...]) -> None:
    assert rules.plan_waves(count, waves) == expected


def test_plan_waves_checks_its_waves() -> None:
    assert _refused(rules.plan_waves, 10, (50,)).code == "campaign.waves"


# --- failure rate and threshold ----------------------------------------------------------


def test_failure_rate_counts_only_finished_devices() -> None:
    counts = {"committed": 6, "up_to_date": 1, "failed": 1, "rolled_back": 1, "refused": 2}
    counts |= {"timed_out": 1, "downloading": 50, "pending": 7}
    assert rules.failure_rate(counts) == (5 / 12, 5, 12)


def test_failure_rate_is_none_until_one_finished() -> None:
    assert rules.failure_rate({"downloading": 3, "pending": 2}) == (None, 0, 0)
    assert rules.failure_rate({}) == (None, 0, 0)
    assert rules.failure_rate({"committed": 4}) == (0.0, 0, 4)


def _step(
    counts: dict[tuple[int, str], int], *, wave: int = 1, waves: int = 3, rate: float = 0.1
) -> rules.Step:
    return rules.next_step(
        current_wave=wave, wave_count=waves, counts=counts, max_failure_rate=rate
    )


# Whole steps: (counts by (wave, state), wave, waves, max failure rate) -> the exact step.
STEPS = {
    "failure-rate-exactly-at-threshold-does-not-halt": (
        {(1, "committed"): 9, (1, "failed"): 1, (2, "downloading"): 5}, 2, 3, 0.1,
        rules.Step(action="wait", wave=2, rate=0.1, failures=1, finished=10),
    ),
    "failure-rate-just-above-threshold-halts-with-exact-reason": (
        {(1, "committed"): 8, (1, "failed"): 1, (1, "timed_out"): 1, (2, "pending"): 5}, 1, 3, 0.1,
        rules.Step(action="halt", wave=1, rate=0.2, failures=2, finished=10,
                   reason="failure rate 20.0% (2 of 10 finished devices) exceeds 10.0%"),
    ),
    "no-finished-device-never-halts": (
        {(1, "downloading"): 4}, 1, 3, 0.0,
        rules.Step(action="wait", wave=1, rate=None, failures=0, finished=0),
    ),
    "finished-wave-advances-to-the-next": (
        {(1, "committed"): 1, (2, "pending"): 4}, 1, 3, 0.1,
        rules.Step(action="advance", wave=2, rate=0.0, failures=0, finished=1),
    ),
    "empty-waves-are-skipped-to-completion": (
        {(1, "committed"): 3}, 1, 3, 0.1,
        rules.Step(action="complete", wave=3, rate=0.0, failures=0, finished=3,
                   reason="all 3 waves finished; 0 of 3 failed"),
    ),
    "last-wave-finished-completes": (
        {(1, "failed"): 1, (3, "committed"): 9}, 3, 3, 0.2,
        rules.Step(action="complete", wave=3, rate=0.1, failures=1, finished=10,
                   reason="all 3 waves finished; 1 of 10 failed"),
    ),
}  # fmt: skip


@pytest.mark.parametrize(
    ("counts", "wave", "waves", "rate", "expected"), list(STEPS.values()), ids=list(STEPS)
)
def test_next_step_is_exact(
    counts: dict[tuple[int, str], int], wave: int, waves: int, rate: float, expected: rules.Step
) -> None:
    assert _step(counts, wave=wave, waves=waves, rate=rate) == expected


def test_failure_rate_just_below_threshold_goes_on() -> None:
    counts = {(1, "committed"): 10, (1, "failed"): 1, (2, "pending"): 1}  # 1 of 11 = 9.1 %
    assert _step(counts, wave=1).action == "advance"


def test_zero_threshold_halts_on_the_first_failure_only() -> None:
    assert _step({(1, "committed"): 5, (2, "pending"): 1}, rate=0.0).action == "advance"
    first = _step({(1, "failed"): 1, (1, "pending"): 99}, rate=0.0)
    assert (first.action, first.failures, first.finished, first.rate) == ("halt", 1, 1, 1.0)


def test_wave_zero_is_not_counted_but_wave_one_is() -> None:
    step = _step({(0, "up_to_date"): 100, (0, "failed"): 7, (1, "rolled_back"): 1, (1, "x"): 0})
    assert (step.action, step.rate, step.failures, step.finished) == ("halt", 1.0, 1, 1)


def test_counts_of_one_state_add_up_over_waves() -> None:
    step = _step({(1, "committed"): 3, (2, "committed"): 4, (2, "failed"): 1}, wave=2, rate=0.5)
    assert (step.failures, step.finished) == (1, 8)


def test_unfinished_wave_waits() -> None:
    for state in ("pending", "notified", "checking", "downloading", "installing", "rebooting"):
        step = _step({(1, "committed"): 1, (1, state): 1, (2, "pending"): 4})
        assert (step.action, step.wave) == ("wait", 1)


def test_zero_count_in_an_unfinished_state_does_not_hold_a_wave() -> None:
    step = _step({(1, "committed"): 2, (1, "downloading"): 0, (2, "pending"): 1})
    assert (step.action, step.wave) == ("advance", 2)


def test_other_waves_do_not_hold_the_current_one() -> None:
    step = _step({(1, "committed"): 2, (3, "pending"): 1, (2, "pending"): 1})
    assert (step.action, step.wave) == ("advance", 2)


def test_last_wave_unfinished_waits() -> None:
    step = _step({(3, "installing"): 1}, wave=3)
    assert (step.action, step.wave, step.reason) == ("wait", 3, None)


def test_single_wave_campaign_completes_when_its_wave_finishes() -> None:
    step = _step({(1, "committed"): 1}, wave=1, waves=1)
    assert (step.action, step.wave) == ("complete", 1)


# --- device report order -----------------------------------------------------------------

PROGRESS = ("pending", "notified", "checking", "downloading", "installing", "rebooting")


@pytest.mark.parametrize("current", PROGRESS)
def test_progress_moves_forward_or_repeats_never_back(current: str) -> None:
    rank = PROGRESS.index(current)
    for reported in PROGRESS:
        assert rules.may_move(current, reported) is (PROGRESS.index(reported) >= rank)
    for reported in sorted(rules.FINISHED_STATES):
        assert rules.may_move(current, reported) is True


@pytest.mark.parametrize("current", ["committed", "up_to_date", "failed", "rolled_back", "refused"])
def test_a_finished_row_never_changes(current: str) -> None:
    for reported in rules.DEVICE_UPDATE_STATES:
        assert rules.may_move(current, reported) is False


def test_timed_out_changes_only_to_what_the_device_finished_with() -> None:
    for reported in rules.DEVICE_UPDATE_STATES:
        expected = reported in rules.FINISHED_STATES and reported != "timed_out"
        assert rules.may_move("timed_out", reported) is expected


# --- rates and durations -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0.0),
        ("0%", 0.0),
        ("1", 1.0),
        ("100%", 1.0),
        ("5%", 0.05),
        ("0.05", 0.05),
        (" 50% ", 0.5),
        ("0." + "0" * 197 + "5", 5e-198),  # 200 characters: read whole
        ("0." + "0" * 198 + "5", 0.0),  # 201 characters: the last one is cut
    ],
)
def test_rates_parse_exactly(text: str, value: float) -> None:
    assert rules.parse_rate(text) == value


@pytest.mark.parametrize("text", ["x", "", "%", "5%%", "five"])
def test_unreadable_rate_is_campaign_rate(text: str) -> None:
    error = _refused(rules.parse_rate, text)
    assert error.code == "campaign.rate" and error.hint == RATE_HINT


@pytest.mark.parametrize("text", ["-0.01", "100.01", "100.01%", "-1%", "101", "nan", "inf", "-inf"])
def test_rate_out_of_range_is_campaign_rate(text: str) -> None:
    error = _refused(rules.parse_rate, text)
    assert error.code == "campaign.rate" and error.hint == RATE_HINT


@pytest.mark.parametrize("text", ["1.0001", "1.5", "5", "100"])
def test_bare_percentage_gets_a_hint_to_add_a_percent_sign(text: str) -> None:
    error = _refused(rules.parse_rate, text)
    assert error.code == "campaign.rate"
    assert error.hint == f"a bare number is a fraction from 0 to 1; for percent write {text}%"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1", 1),
        ("1s", 1),
        ("2s", 2),
        ("2m", 120),
        ("2h", 7200),
        ("2d", 172800),
        (" 30m ", 1800),
        ("7d", 604800),
        ("604800", 604800),
        ("168h", 604800),
    ],
)
def test_durations_parse_exactly(text: str, seconds: int) -> None:
    parsed = rules.parse_duration(text)
    assert parsed == seconds and type(parsed) is int


def test_timeout_bounds_are_one_second_and_seven_days() -> None:
    assert (rules.MIN_DEVICE_TIMEOUT_S, rules.MAX_DEVICE_TIMEOUT_S) == (1, 604800)


@pytest.mark.parametrize("text", ["0", "0s", "0d", "604801", "8d", "169h", "10081m"])
def test_duration_out_of_range_is_campaign_duration(text: str) -> None:
    error = _refused(rules.parse_duration, text)
    assert error.code == "campaign.duration" and error.hint == DURATION_HINT


@pytest.mark.parametrize("text", ["", "m", "1w", "-5m", "1.5h", "30 minutes", "1234567890"])
def test_unreadable_duration_is_campaign_duration(text: str) -> None:
    error = _refused(rules.parse_duration, text)
    assert error.code == "campaign.duration" and error.hint == DURATION_HINT


# --- which devices take a release --------------------------------------------------------

V2, V1 = (2, 0, 0), (1, 0, 0)
BOOT_REFUSAL = ("cmp-7", "no measured boot chain", "ota.no_boot_chain")


def test_device_at_or_above_the_release_is_up_to_date() -> None:
    for firmware in [(2, 0, 0), (2, 0, 1), (3, 0, 0)]:
        target = rules.classify_target(
            firmware=firmware, version=V2, min_version=V1, refusal=BOOT_REFUSAL
        )
        assert target == rules.Target(action="up_to_date")


def test_device_just_below_the_release_updates() -> None:
    target = rules.classify_target(firmware=(1, 9, 9), version=V2, min_version=V1, refusal=None)
    assert target == rules.Target(action="update")


def test_device_exactly_at_min_version_updates() -> None:
    target = rules.classify_target(firmware=V1, version=V2, min_version=V1, refusal=None)
    assert target == rules.Target(action="update")


def test_device_just_below_min_version_is_excluded() -> None:
    target = rules.classify_target(firmware=(0, 9, 9), version=V2, min_version=V1, refusal=None)
    assert target == rules.Target(
        action="exclude",
        reason="runs 0.9.9, below the release's min_version 1.0.0",
        code="campaign.excluded.below_min_version",
    )


def test_unknown_firmware_updates() -> None:
    target = rules.classify_target(firmware=None, version=V2, min_version=V1, refusal=None)
    assert target == rules.Target(action="update")


def test_device_that_cannot_update_is_excluded_with_its_refusal() -> None:
    for firmware in [None, (1, 5, 0), (0, 1, 0)]:
        target = rules.classify_target(
            firmware=firmware, version=V2, min_version=V1, refusal=BOOT_REFUSAL
        )
        assert target == rules.Target(
            action="exclude",
            reason="cannot take updates: no measured boot chain (reported in cmp-7)",
            code="campaign.excluded.no_boot_chain",
        )


def test_refusal_without_reason_shows_its_code() -> None:
    target = rules.classify_target(
        firmware=None, version=V2, min_version=V1, refusal=("cmp-1", None, "ota.no_boot_chain")
    )
    assert target.reason == "cannot take updates: ota.no_boot_chain (reported in cmp-1)"
    assert target.code == "campaign.excluded.no_boot_chain"


def test_exclusion_reason_is_cut_at_256_characters() -> None:
    refusal = ("cmp-1", "r" * 300, "ota.no_boot_chain")
    target = rules.classify_target(firmware=None, version=V2, min_version=V1, refusal=refusal)
    assert target.reason == ("cannot take updates: " + "r" * 300)[:256]
    assert len(target.reason or "") == 256


# --- decisions are immutable keyword-only values -----------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        rules.Step(action="wait", wave=1, rate=None, failures=0, finished=0),
        rules.Target(action="update"),
    ],
)
def test_decisions_are_frozen_slotted_keyword_only(value: object) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        value.action = "halt"  # type: ignore[attr-defined]
    assert not hasattr(value, "__dict__")
    fields = [getattr(value, f.name) for f in dataclasses.fields(value)]  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        type(value)(*fields)
