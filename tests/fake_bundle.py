"""A small in-memory model bundle for tests of the real-time path."""

from __future__ import annotations

from typing import Any

import numpy as np

D = 8


class Manifest:
    has_ranker = False

    def type_id(self, event_type: str) -> int:
        return 1


class Bundle:
    """``n`` items ``{prefix}0..``, unit vectors; new items embed as a fixed direction.

    Its user encoder is the mean of the history's item vectors.
    """

    provider = "cpu"
    history_len = 4

    def __init__(self, n: int, version: str = "v1", prefix: str = "b") -> None:
        rng = np.random.default_rng(0)
        vecs = rng.normal(size=(n, D)).astype(np.float32)
        self.item_vectors = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
        self.item_ids = [f"{prefix}{r}" for r in range(n)]
        self.item_popularity = np.ones(n, np.float32)
        self.version = version
        self.manifest = Manifest()

    def encode_users(self, vecs: np.ndarray, *rest: np.ndarray) -> np.ndarray:
        return np.asarray(vecs.mean(axis=1), np.float32)

    def embed_catalog(self, items: list[Any]) -> np.ndarray:
        return np.tile(np.eye(1, D, dtype=np.float32), (len(items), 1))
