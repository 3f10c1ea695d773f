"""User vectors for a micro-batch: the bundle's encoder, or the model-free fold-in.

Pure compute over the users' histories and the catalog's rows and vectors; the scorer
(``streams.core.live_scorer``) holds the bundle and passes it in. A faulty encoder never
stops the stream: its users are folded in instead, and their lists say ``model_free``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Protocol

import numpy as np

from inference.fold_in import EVENT_WEIGHTS
from inference.history_inputs import (
    EncoderBuffers,
    encoder_inputs,
    encoder_inputs_into,
    fold_in_vectors,
    history_columns,
)
from inference.item_catalog import ItemCatalog
from schemas.events import EVENT_TYPES
from streams.core.state_rules import TYPE_CODES, UserState

log = logging.getLogger("freshet.live")

_ITEM = attrgetter("item_id")
# The fold-in's weight of each event type; a type without a code counts as code 0's
# (``TYPE_CODES.get(t, 0)`` before), a type without a weight as 0.
_FOLD_IN_WEIGHT = {t: EVENT_WEIGHTS.get(EVENT_TYPES[c], 0.0) for t, c in TYPE_CODES.items()}
_FOLD_IN_DEFAULT = EVENT_WEIGHTS.get(EVENT_TYPES[0], 0.0)


class BoundRun(Protocol):
    """A graph run whose inputs are bound (``inference.onnx_session.BoundRun``)."""

    def run(self) -> np.ndarray: ...


@dataclass(frozen=True, slots=True)
class BoundEncoder:
    """A bundle's user encoder for a batch of one, its inputs written in place.

    ``graph.run()`` reads ``buffers``' inputs where they are and returns the (1, D)
    output; built once per bundle (``bound_encoder``), used by one caller at a time.
    """

    graph: BoundRun
    buffers: EncoderBuffers


def bound_encoder(bundle: Any) -> BoundEncoder | None:
    """``bundle``'s bound batch-of-one encoder run, or None (the plain run serves)."""
    make = getattr(bundle, "bound_encoder_of_one", None)
    bound = None if make is None else make()
    if bound is None:
        return None
    feeds = bound.inputs
    buffers = EncoderBuffers.around(
        feeds["item_vecs"], feeds["types"], feeds["gaps"], feeds["mask"]
    )
    return BoundEncoder(bound, buffers)


def history_rows(catalog: ItemCatalog, states: Sequence[UserState]) -> list[np.ndarray]:
    """Per user, the catalog row of each history entry (-1 for unknown items)."""
    return [catalog.rows(list(map(_ITEM, s.history))) for s in states]


def user_vectors(
    catalog: ItemCatalog,
    states: Sequence[UserState],
    seqs: Sequence[np.ndarray],
    half_life_s: float,
    bundle: Any | None = None,
    type_codes: Mapping[str, int] | None = None,
    bound: BoundEncoder | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """User vectors ``(B, D)`` and which came from the model-free fold-in.

    Args:
        catalog: The served catalog (its vectors are the encoder's and fold-in's inputs).
        states: The users' states, histories oldest first.
        seqs: Per user, ``history_rows`` of their history.
        half_life_s: The fold-in's decay.
        bundle: The served bundle; None folds every user in.
        type_codes: The bundle's encoder code of each event type (0 if absent).
        bound: ``bundle``'s bound batch-of-one run (``bound_encoder``); it serves a batch
            of one with the same bits as the plain run.
    """
    b, d = len(states), catalog.dim
    if bundle is not None:
        try:
            vecs = encode(bundle, type_codes or {}, catalog, states, seqs, bound)
            if vecs.shape != (b, d):  # a graph whose output width varies with input
                raise ValueError(f"encoder gave shape {vecs.shape}, expected {(b, d)}")
            finite = np.isfinite(vecs).all(axis=1)
            if finite.all():
                return vecs, np.zeros(b, bool)
            bad = ~finite
            log.warning("encoder gave non-finite vectors for %d users; folding in", bad.sum())
            folded = fold_in(catalog, states, seqs, half_life_s)
            return np.where(bad[:, None], folded, vecs), bad
        except Exception as exc:  # a faulty model must not stop the stream
            log.error("user encoder failed (%s); serving model-free lists", exc)
    folded = fold_in(catalog, states, seqs, half_life_s)
    return folded.reshape(b, d), np.ones(b, bool)


def encode(
    bundle: Any,
    type_codes: Mapping[str, int],
    catalog: ItemCatalog,
    states: Sequence[UserState],
    seqs: Sequence[np.ndarray],
    bound: BoundEncoder | None = None,
) -> np.ndarray:
    """The bundle's user encoder on each user's last ``history_len`` known entries."""
    columns = history_columns([s.history for s in states], seqs, type_codes, 0, np.int64)
    if bound is not None and len(states) == 1:
        any_known = encoder_inputs_into(columns, bound.buffers, catalog.vectors())
        out = bound.graph.run()
    else:
        vecs, types, gaps, mask, any_known = encoder_inputs(
            columns, bundle.history_len, catalog.vectors()
        )
        out = np.asarray(bundle.encode_users(vecs, types, gaps, mask), np.float32)
    if not any_known.all():
        out[~any_known] = 0.0
    return out


def fold_in(
    catalog: ItemCatalog,
    states: Sequence[UserState],
    seqs: Sequence[np.ndarray],
    half_life_s: float,
) -> np.ndarray:
    """Decayed, event-weighted sum of the history's item vectors (model-free)."""
    histories = [s.history for s in states]
    columns = history_columns(histories, seqs, _FOLD_IN_WEIGHT, _FOLD_IN_DEFAULT, np.float32)
    return fold_in_vectors(columns, catalog.vectors(), half_life_s)
