"""The model-based detector: an IsolationForest per model cohort (ADR 0018), explained.

Each cohort keeps a bounded, seeded reservoir of the feature vectors of its learning window,
fits an IsolationForest on it once the cohort has learned, and then scores in batches: a window
whose features all stay below the gate is not scored at all, the rest are queued and
scored together. A window scoring below every training window (less a margin) is an outlier;
its explanation is each feature's deviation from the training median in training IQRs, the
largest first.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from sklearn.ensemble import IsolationForest

__all__ = ["CohortModel", "ModelParams", "Outlier", "PackedForest"]

_EULER: Final = 0.5772156649015329


@dataclass(frozen=True)
class ModelParams:
    """The model's constants.

    Attributes:
        trees: IsolationForest's n_estimators.
        max_samples: IsolationForest's max_samples.
        reservoir: Training vectors kept per cohort (reservoir sampling).
        min_samples: Fewest training vectors to fit a model.
        gate: A window is scored only when a feature reaches this (more than usual: less
            traffic, fewer processes are not what an attack looks like).
        quantile: An outlier scores below this quantile of the training windows' scores…
        margin: …less this margin.
        seed: The random seed (reservoir and forest).
    """

    trees: int = 64
    max_samples: int = 256
    reservoir: int = 4096
    min_samples: int = 200
    gate: float = 3.0
    quantile: float = 0.0
    margin: float = 0.05
    seed: int = 13


@dataclass(frozen=True, slots=True)
class Outlier:
    """A scored window that the model finds anomalous.

    Attributes:
        key: What the caller queued with the vector.
        score: IsolationForest's score_samples (lower: more anomalous).
        threshold: The cohort's outlier threshold.
        features: The top contributing features: name → deviation in training IQRs.
    """

    key: Any
    score: float
    threshold: float
    features: dict[str, float]


def _path_length(n: np.ndarray[Any, np.dtype[np.float64]]) -> np.ndarray[Any, np.dtype[np.float64]]:
    """The average path length of an unsuccessful search in a BST of n points (Liu et al.)."""
    out = np.zeros_like(n)
    big = n > 2
    out[n == 2] = 1.0
    out[big] = 2.0 * (np.log(n[big] - 1.0) + _EULER) - 2.0 * (n[big] - 1.0) / n[big]
    return out


class PackedForest:
    """A fitted IsolationForest's trees as padded arrays, scored for a whole batch at once.

    scikit-learn walks its trees one by one (a few hundred microseconds each, whatever the
    batch); here every tree advances one level per numpy step, so a batch costs about
    ``depth`` steps. Scores equal ``IsolationForest.score_samples`` (a unit test checks it).
    """

    def __init__(self, forest: IsolationForest) -> None:
        trees = [est.tree_ for est in forest.estimators_]
        width = max(t.node_count for t in trees)
        shape = (len(trees), width)
        self.left = np.zeros(shape, dtype=np.intp)
        self.right = np.zeros(shape, dtype=np.intp)
        self.feature = np.zeros(shape, dtype=np.intp)
        self.threshold = np.zeros(shape, dtype=np.float64)
        self.value = np.zeros(shape, dtype=np.float64)
        self.depth = 0
        for i, tree in enumerate(trees):
            self._pack(i, tree)
        self.norm = float(len(trees)) * float(
            _path_length(np.array([forest.max_samples_], float))[0]
        )

    def _pack(self, i: int, tree: Any) -> None:
        n = tree.node_count
        left, right = np.asarray(tree.children_left), np.asarray(tree.children_right)
        depth = np.zeros(n, dtype=np.float64)
        for node in range(n):  # a parent's id is below its children's
            if left[node] >= 0:
                depth[left[node]] = depth[right[node]] = depth[node] + 1
        leaf = left < 0
        own = np.arange(n)
        self.left[i, :n] = np.where(leaf, own, left)
        self.right[i, :n] = np.where(leaf, own, right)
        self.feature[i, :n] = np.where(leaf, 0, tree.feature)
        self.threshold[i, :n] = np.where(leaf, np.inf, tree.threshold)
        samples = np.asarray(tree.n_node_samples, dtype=np.float64)
        self.value[i, :n] = np.where(leaf, depth + _path_length(samples), 0.0)
        self.depth = max(self.depth, int(depth.max()))

    def score_samples(
        self, data: np.ndarray[Any, np.dtype[np.float64]]
    ) -> np.ndarray[Any, np.dtype[np.float64]]:
        """IsolationForest's score_samples (lower: more anomalous)."""
        x = data.astype(np.float32).astype(np.float64)  # the trees compare float32 inputs
        rows = np.arange(len(x))[:, None]
        trees = np.arange(self.left.shape[0])[None, :]
        node = np.zeros((len(x), self.left.shape[0]), dtype=np.intp)
        for _ in range(self.depth):
            go_left = x[rows, self.feature[trees, node]] <= self.threshold[trees, node]
            node = np.where(go_left, self.left[trees, node], self.right[trees, node])
        depths = self.value[trees, node].sum(axis=1)
        scores: np.ndarray[Any, np.dtype[np.float64]] = -np.power(2.0, -depths / self.norm)
        return scores


class CohortModel:
    """One cohort's (and source's) forest: learn, fit, queue, score in batches."""

    __slots__ = (
        "_forest",
        "_iqr",
        "_median",
        "_queue",
        "_rng",
        "_samples",
        "_seen",
        "_threshold",
        "names",
        "params",
    )

    def __init__(self, names: tuple[str, ...], params: ModelParams, *, salt: str) -> None:
        self.names = names
        self.params = params
        self._rng = random.Random(f"{params.seed}:{salt}")  # noqa: S311  # sampling, not secrets
        self._seen = 0
        self._samples: list[list[float]] = []
        self._forest: PackedForest | None = None
        self._threshold = 0.0
        self._median = np.zeros(len(names))
        self._iqr = np.ones(len(names))
        self._queue: list[tuple[Any, list[float]]] = []

    @property
    def fitted(self) -> bool:
        """Whether the forest is trained."""
        return self._forest is not None

    def learn(self, vector: list[float]) -> None:
        """Offer a learning-window vector to the reservoir."""
        self._seen += 1
        if len(self._samples) < self.params.reservoir:
            self._samples.append(vector)
            return
        j = self._rng.randrange(self._seen)
        if j < self.params.reservoir:
            self._samples[j] = vector

    def fit(self) -> bool:
        """Train on the reservoir (if it holds enough); returns whether a forest is ready."""
        if self._forest is not None:
            return True
        if len(self._samples) < self.params.min_samples:
            return False
        data = np.asarray(self._samples, dtype=np.float64)
        forest = IsolationForest(
            n_estimators=self.params.trees,
            max_samples=min(self.params.max_samples, len(data)),
            random_state=self.params.seed,
        )
        forest.fit(data)
        packed = PackedForest(forest)
        scores = packed.score_samples(data)
        low = float(np.quantile(scores, self.params.quantile))
        self._threshold = low - self.params.margin
        q1, self._median, q3 = np.percentile(data, [25, 50, 75], axis=0)
        self._iqr = np.maximum(q3 - q1, 0.5)
        self._forest = packed
        self._samples = []  # the forest holds what it needs
        return True

    def queue(self, key: Any, vector: list[float]) -> bool:
        """Queue a vector for scoring if it passes the gate; returns whether it was queued."""
        gate = self.params.gate
        for v in vector:
            if v >= gate:
                self._queue.append((key, vector))
                return True
        return False

    def pending(self) -> int:
        """Vectors waiting to be scored."""
        return len(self._queue)

    def score(self) -> list[Outlier]:
        """Score every queued vector in one batch; returns the outliers."""
        if not self._queue or self._forest is None:
            self._queue = []
            return []
        keys = [k for k, _ in self._queue]
        data = np.asarray([v for _, v in self._queue], dtype=np.float64)
        self._queue = []
        scores = self._forest.score_samples(data)
        out = []
        for i in np.flatnonzero(scores < self._threshold):
            out.append(
                Outlier(
                    key=keys[i],
                    score=float(scores[i]),
                    threshold=self._threshold,
                    features=self.explain(data[i]),
                )
            )
        return out

    def explain(self, row: np.ndarray[Any, np.dtype[np.float64]], top: int = 3) -> dict[str, float]:
        """The features that deviate most from the training median, in training IQRs."""
        dev = (row - self._median) / self._iqr
        order = np.argsort(-np.abs(dev))[:top]
        return {self.names[i]: round(float(dev[i]), 2) for i in order if dev[i] != 0}

    def nbytes(self) -> int:
        """Approximate memory (bytes) of the reservoir and the queue."""
        width = len(self.names) * 32 + 56
        return (len(self._samples) + len(self._queue)) * width + 4096
