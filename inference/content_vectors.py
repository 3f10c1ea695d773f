"""Item vectors from content alone when no model bundle is loaded.

Each hashed feature id gets a fixed pseudo-random direction: row ``id`` of a seeded
Gaussian projection matrix. An item's vector is the normalised weighted sum of its
features' rows. Items that share categories, attributes or words point the same way,
so the model-free fold-in and the ANN search still find taste-alike items before any
model is trained.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import numpy.typing as npt

from inference.item_features import HashingConfig, hash_items_batch

FloatArray = npt.NDArray[np.float32]
CATEGORY_WEIGHT = 3.0


@lru_cache(maxsize=4)
def _projection(buckets: int, dim: int, seed: int) -> FloatArray:
    rng = np.random.default_rng(seed)
    proj = rng.standard_normal((buckets, dim), dtype=np.float32)
    proj /= np.linalg.norm(proj, axis=1, keepdims=True)
    proj[0] = 0.0  # id 0 is padding
    return proj


def content_vectors(
    feature_rows: npt.ArrayLike,
    dim: int,
    seed: int = 0,
    weights: npt.ArrayLike | None = None,
    buckets: int = HashingConfig().buckets,
) -> FloatArray:
    """Unit vectors (B, dim) from hashed feature rows (B, F); 0 is padding.

    Args:
        feature_rows: Hashed ids per item, 0-padded (``hash_item_features`` rows).
        dim: Output dimension.
        seed: Seed of the feature directions.
        weights: Optional (F,) or (B, F) weight per column (e.g. categories count more).
        buckets: Size of the hashed vocabulary (ids are taken modulo it).
    """
    rows = np.asarray(feature_rows, dtype=np.int64) % buckets
    w = np.ones(rows.shape, np.float32) if weights is None else np.asarray(weights, np.float32)
    w = np.broadcast_to(w, rows.shape)
    out = np.einsum("bf,bfd->bd", w, _projection(buckets, dim, seed)[rows]).astype(np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return np.where(norms > 0, out / np.maximum(norms, 1e-12), 0.0).astype(np.float32)


def catalog_content_vectors(
    items: list[tuple[tuple[str, ...], dict[str, str | int | float | bool], str]],
    dim: int,
    config: HashingConfig | None = None,
    seed: int = 0,
    chunk: int = 4096,
) -> FloatArray:
    """Content vectors of ``(categories, attributes, text)`` items; categories weigh 3x."""
    cfg = config or HashingConfig()
    out = np.zeros((len(items), dim), np.float32)
    for start in range(0, len(items), chunk):
        part = items[start : start + chunk]
        rows = hash_items_batch(part, cfg)
        weights = np.ones(rows.shape, np.float32)
        for i, (cats, _attrs, _text) in enumerate(part):
            weights[i, : len(cats)] = CATEGORY_WEIGHT  # categories come first in a row
        out[start : start + len(part)] = content_vectors(rows, dim, seed, weights, cfg.buckets)
    return out
