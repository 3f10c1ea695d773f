"""Item vectors from content alone when no model bundle is loaded.

Each hashed feature id gets a fixed pseudo-random unit direction (seeded by the id),
and an item's vector is the normalised sum over its features. Items that share
categories, attributes or words point the same way, so the model-free fold-in and the
ANN search still find taste-alike items before any model is trained.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from inference.item_features import HashingConfig, hash_item_features

FloatArray = npt.NDArray[np.float32]


def _direction(feature_id: int, dim: int, seed: int) -> FloatArray:
    rng = np.random.default_rng((seed, feature_id))
    v = rng.standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def content_vectors(
    feature_rows: npt.ArrayLike, dim: int, seed: int = 0, weights: npt.ArrayLike | None = None
) -> FloatArray:
    """Unit vectors (B, dim) from hashed feature rows (B, F); 0 is padding.

    Args:
        feature_rows: Hashed ids per item, 0-padded (``hash_item_features`` rows).
        dim: Output dimension.
        seed: Seed of the feature directions.
        weights: Optional (F,) weight per column (e.g. categories count more).
    """
    rows = np.asarray(feature_rows, dtype=np.int64)
    w = np.ones(rows.shape[1], np.float32) if weights is None else np.asarray(weights, np.float32)
    cache: dict[int, FloatArray] = {}
    out = np.zeros((rows.shape[0], dim), np.float32)
    for b in range(rows.shape[0]):
        for j, fid in enumerate(rows[b]):
            if fid <= 0:
                continue
            vec = cache.get(int(fid))
            if vec is None:
                vec = cache[int(fid)] = _direction(int(fid), dim, seed)
            out[b] += w[j] * vec
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return np.where(norms > 0, out / np.maximum(norms, 1e-12), 0.0).astype(np.float32)


def catalog_content_vectors(
    items: list[tuple[tuple[str, ...], dict[str, str | int | float | bool], str]],
    dim: int,
    config: HashingConfig | None = None,
    seed: int = 0,
) -> FloatArray:
    """Content vectors of ``(categories, attributes, text)`` items; categories weigh 3x."""
    cfg = config or HashingConfig()
    rows = np.zeros((len(items), cfg.max_features), np.int64)
    weights = np.ones(cfg.max_features, np.float32)
    for i, (cats, attrs, text) in enumerate(items):
        rows[i] = hash_item_features(cats, attrs, text, cfg)
    out = np.zeros((len(items), dim), np.float32)
    for i, (cats, _attrs, _text) in enumerate(items):
        w = weights.copy()
        w[: len(cats)] = 3.0
        out[i] = content_vectors(rows[i : i + 1], dim, seed, w)[0]
    return out
