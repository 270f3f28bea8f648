"""The model-based detector: a seeded IsolationForest per cohort that names its features."""

from __future__ import annotations

import random

import numpy as np

from trustfleet.monitoring._model import CohortModel, ModelParams

NAMES = ("f0", "f1", "f2", "f3")
PARAMS = ModelParams(
    trees=32, reservoir=600, min_samples=100, gate=3.0, quantile=0.01, margin=0.0, seed=4
)


def _trained(seed: int = 1) -> CohortModel:
    rng = random.Random(seed)
    model = CohortModel(NAMES, PARAMS, salt="cam")
    for _ in range(1000):  # more than the reservoir: sampled
        model.learn([rng.gauss(0, 0.5) for _ in NAMES])
    assert model.fit()
    return model


def test_too_few_samples_fit_nothing() -> None:
    model = CohortModel(NAMES, PARAMS, salt="cam")
    model.learn([0.0] * 4)
    assert not model.fit() and not model.fitted
    assert model.score() == []


def test_the_gate_scores_only_windows_above_the_usual() -> None:
    model = _trained()
    assert not model.queue("quiet", [0.1, -0.2, 0.3, 0.0])
    assert not model.queue("less-than-usual", [-9.0, 0.0, 0.0, 0.0])
    assert model.queue("loud", [0.0, 0.0, 9.0, 0.0])
    assert model.pending() == 1


def test_an_outlier_names_the_features_that_made_it() -> None:
    model = _trained()
    model.queue("joint", [3.0, 3.0, 3.0, 0.0])  # several features unusual together
    model.queue("single", [0.2, 0.0, 12.0, 0.1])  # one extreme feature: the baselines' job
    outliers = {o.key: o for o in model.score()}
    assert set(outliers) == {"joint"}  # an IsolationForest saturates outside its data
    joint = outliers["joint"]
    assert set(joint.features) == {"f0", "f1", "f2"}
    assert all(v > 3 for v in joint.features.values())
    assert joint.score < joint.threshold
    assert model.pending() == 0


def test_the_explanation_is_the_deviation_in_training_iqrs() -> None:
    model = _trained()
    explained = model.explain(np.array([0.0, -6.0, 0.0, 2.0]), top=2)
    assert list(explained) == ["f1", "f3"]
    assert explained["f1"] < -4 < 1 < explained["f3"]


def test_the_same_seed_gives_the_same_model() -> None:
    vector = [0.0, 3.5, 0.0, 3.2]
    scores = []
    for _ in range(2):
        model = _trained()
        model.queue("k", vector)
        scores.append([(o.score, o.threshold, o.features) for o in model.score()])
    assert scores[0] == scores[1]


def test_the_packed_forest_scores_as_scikit_learn_does() -> None:
    from sklearn.ensemble import IsolationForest

    from trustfleet.monitoring._model import PackedForest

    rng = np.random.default_rng(7)
    train = rng.normal(size=(400, 5))
    forest = IsolationForest(n_estimators=16, max_samples=128, random_state=3).fit(train)
    probe = np.vstack([train[:50], rng.normal(scale=4, size=(50, 5))])
    np.testing.assert_allclose(
        PackedForest(forest).score_samples(probe), forest.score_samples(probe)
    )
