"""Score evaluation cases with a loaded bundle, exactly as the online side would.

Items of the log that the bundle does not know (new since it was trained) are embedded
from their catalog content through ``item_content.onnx``, as the worker does on a
catalog event.
"""

from __future__ import annotations

import numpy as np

from inference.onnx_session import LoadedBundle
from training.data import TYPE_VOCAB, InteractionLog
from training.evaluation.protocols import EvalCases


class BundleScorer:
    """The protocol's ``Scorer`` for an ONNX bundle over one log's item codes."""

    def __init__(self, bundle: LoadedBundle, log: InteractionLog) -> None:
        if log.hashing != bundle.manifest.hashing:
            raise ValueError("the log was hashed with another config than the bundle's")
        self.name = f"bundle {bundle.version}"
        self.bundle = bundle
        rows = np.array([bundle.row_of.get(i, -1) for i in log.item_ids], dtype=np.int64)
        known = rows >= 0
        self.vectors = np.zeros((log.n_items, bundle.dim), dtype=np.float32)
        self.vectors[known] = bundle.item_vectors[rows[known]]
        self.vectors[~known] = bundle.embed_items(log.item_features[~known])
        self.unknown_items = int((~known).sum())
        self.type_map = np.array([bundle.manifest.type_id(t) for t in TYPE_VOCAB])

    def score(self, cases: EvalCases) -> np.ndarray:
        hist = cases.history
        vecs = self.vectors[np.clip(hist.items, 0, None)] * hist.mask[:, :, None]
        users = self.bundle.encode_users(vecs, self.type_map[hist.types], hist.gaps, hist.mask)
        return users @ self.vectors.T
