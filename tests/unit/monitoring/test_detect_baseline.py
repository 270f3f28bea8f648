"""Baseline maths: EWMA levels in log space, winsorised learning, time-of-day profiles."""

from __future__ import annotations

import math
import random

import pytest

from trustfleet.monitoring._baseline import BaselineParams, Level, Season, update_and_score

PARAMS = BaselineParams(device_alpha=0.05, cohort_alpha=0.05, clip=4.0, floors=(0.1,))


def _feed(values: list[float], season: Season, level: Level, slot: int = 0) -> list[float]:
    zs = []
    for v in values:
        score = update_and_score([math.log1p(v)], slot, season, level, PARAMS)
        zs.append(score.device_z[0])
    return zs


def test_a_steady_metric_scores_near_zero_and_a_spike_scores_high() -> None:
    rng = random.Random(3)
    season, level = Season(1), Level(1)
    zs = _feed([1000 * math.exp(rng.gauss(0, 0.1)) for _ in range(300)], season, level)
    assert max(abs(z) for z in zs[50:]) < 4
    spike = update_and_score([math.log1p(10_000)], 0, season, level, PARAMS, hot_z=3.0)
    assert spike.device_z[0] > 10
    [(index, dz, cz, expected, spread)] = spike.hot
    assert index == 0 and dz == spike.device_z[0] and cz > 3
    assert math.expm1(expected) == pytest.approx(1000, rel=0.15)
    assert spread >= 0.1  # the floor


def test_the_spread_learns_the_mean_absolute_deviation() -> None:
    rng = random.Random(5)
    season, level = Season(1), Level(1)
    sigma = 0.4
    _feed([1000 * math.exp(rng.gauss(0, sigma)) for _ in range(3000)], season, level)
    expected_mad = sigma * math.sqrt(2 / math.pi)
    assert level.spread[0] == pytest.approx(expected_mad, rel=0.35)
    assert abs(level.mean[0]) < 0.3


def test_an_outlier_moves_the_baseline_a_little_a_lasting_change_is_learned() -> None:
    season, level = Season(1), Level(1)
    _feed([100.0] * 200, season, level)
    mean_before = level.mean[0] + season.mean[0][0]
    _feed([1e9], season, level)
    moved = level.mean[0] + season.mean[0][0] - mean_before
    assert 0 < moved < 0.1  # winsorised at clip spreads, a tenth of the weight
    zs = _feed([400.0] * 400, season, level)
    assert zs[0] > 6
    assert abs(zs[-1]) < 2  # four times the level for long enough becomes the level


def test_a_new_slot_starts_from_the_previous_one() -> None:
    season, level = Season(1, 48), Level(1)
    _feed([500.0] * 50, season, level, slot=10)
    score = update_and_score([math.log1p(500.0)], 11, season, level, PARAMS)
    assert abs(score.device_z[0]) < 1  # not "everything is new at 05:30"
    assert season.count[11] > 1
    assert season.mean[11][0] == pytest.approx(season.mean[10][0], abs=0.01)


def test_an_absent_metric_is_neither_scored_nor_learned() -> None:
    season, level = Season(2), Level(2)
    params = BaselineParams(floors=(0.1, 0.1))
    update_and_score([1.0, None], 0, season, level, params)
    score = update_and_score([1.0, None], 0, season, level, params)
    assert score.device_z[1] == 0.0
    assert season.mean[0][1] == 0.0 and level.mean[1] == 0.0
