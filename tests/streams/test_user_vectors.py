"""The user vectors' compiled inputs against the numpy form they replaced, bit for bit."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.fold_in import event_weights, fold_in_events
from inference.history_inputs import EncoderBuffers, history_columns
from inference.item_catalog import ItemCatalog
from schemas.events import EVENT_TYPES
from streams.core.state_rules import TYPE_CODES, HistoryEntry, UserState
from streams.core.user_vectors import BoundEncoder, encode, fold_in, history_rows

N_ITEMS, DIM, HISTORY_LEN = 12, 5, 6
TYPES = (*EVENT_TYPES, "not-a-type")


def _reference_flat(
    histories: Sequence[Sequence[Any]], rows: Sequence[np.ndarray], code: Callable[[str], int]
) -> tuple[np.ndarray, ...]:
    """The flattening as it was (generators, boolean masks): user, row, type, ts, rank."""
    lengths = np.fromiter((len(r) for r in rows), np.int64, len(rows))
    flat_rows = np.concatenate(rows) if len(rows) else np.zeros(0, np.int64)
    known = flat_rows >= 0
    u = np.repeat(np.arange(len(rows), dtype=np.int64), lengths)[known]
    codes = np.fromiter((code(h.type) for hist in histories for h in hist), np.int64)
    ts = np.fromiter((h.ts for hist in histories for h in hist), np.int64)
    ends = np.searchsorted(u, u, side="right") if u.size else u
    rank = ends - np.arange(u.size) - 1
    return u, flat_rows[known].astype(np.int64), codes[known], ts[known], rank


def _reference_encoder_inputs(
    states: Sequence[UserState], seqs: Sequence[np.ndarray], codes: Mapping[str, int], vectors: Any
) -> tuple[np.ndarray, ...]:
    """``encoder_inputs`` as it was: numpy scatter of the last ``n`` known entries."""
    histories = [s.history for s in states]
    user_, row, typ, ts_, rank = _reference_flat(histories, seqs, lambda t: codes.get(t, 0))
    users, n, d = len(states), HISTORY_LEN, vectors.shape[1]
    vecs = np.zeros((users, n, d), np.float32)
    types = np.zeros((users, n), np.int64)
    gaps = np.zeros((users, n), np.float32)
    mask = np.zeros((users, n), np.float32)
    keep = rank < n
    user, slot = user_[keep], n - 1 - rank[keep]
    newest = rank == 0
    newest_ts = np.zeros(users, np.int64)
    newest_ts[user_[newest]] = ts_[newest]
    vecs[user, slot] = vectors[row[keep]]
    types[user, slot] = typ[keep]
    gaps[user, slot] = np.log1p(np.maximum(newest_ts[user] - ts_[keep], 0) / 1000.0)
    mask[user, slot] = 1.0
    return vecs, types, gaps, mask


def _reference_fold_in(
    catalog: ItemCatalog, states: Sequence[UserState], seqs: Sequence[np.ndarray], half: float
) -> np.ndarray:
    """The model-free vectors as they were: ``fold_in_events`` from empty states."""
    b, d = len(states), catalog.dim
    histories = [s.history for s in states]
    user, row, typ, ts, _ = _reference_flat(histories, seqs, lambda t: TYPE_CODES.get(t, 0))
    if not row.size:
        return np.zeros((b, d), np.float32)
    vecs, _ = fold_in_events(
        np.zeros((b, d), np.float32),
        np.full(b, -np.inf),
        user,
        catalog.vectors()[row],
        event_weights([EVENT_TYPES[c] for c in typ.tolist()]),
        ts,
        half,
    )
    return np.asarray(vecs, np.float32)


class _Recording:
    """A bundle whose encoder records its inputs and returns a function of them."""

    history_len = HISTORY_LEN

    def __init__(self) -> None:
        self.seen: tuple[np.ndarray, ...] = ()

    def encode_users(self, *arrays: np.ndarray) -> np.ndarray:
        self.seen = arrays
        vecs, types, gaps, mask = arrays
        return (vecs.sum(axis=1) + (gaps * mask + types).sum(axis=1)[:, None]).astype(np.float32)


class _BoundRecording:
    """A bound run that reads the buffers where they are, through ``_Recording``."""

    def __init__(self, encoder: _Recording, buffers: EncoderBuffers) -> None:
        self.encoder, self.buffers = encoder, buffers

    def run(self) -> np.ndarray:
        b = self.buffers
        return self.encoder.encode_users(b.vecs, b.types, b.gaps, b.mask)


def _catalog(seed: int) -> ItemCatalog:
    rng = np.random.default_rng(seed)
    vecs = rng.normal(size=(N_ITEMS, DIM)).astype(np.float32) * rng.uniform(0.1, 50)
    return ItemCatalog([f"i{r}" for r in range(N_ITEMS)], vecs)


entry = st.tuples(
    st.integers(0, N_ITEMS + 3),  # items past N_ITEMS are unknown to the catalog
    st.sampled_from(TYPES),
    st.integers(1_600_000_000_000, 1_600_000_900_000),  # out of order, ties
)
histories = st.lists(st.lists(entry, max_size=14), min_size=1, max_size=5)


def _states(raw: list[list[tuple[int, str, int]]]) -> list[UserState]:
    return [
        UserState(history=tuple(HistoryEntry(f"i{i}", t, ts) for i, t, ts in hist))  # type: ignore[arg-type]
        for hist in raw
    ]


@settings(max_examples=300, deadline=None)
@given(raw=histories, seed=st.integers(0, 3))
def test_encoder_inputs_equal_the_numpy_form(raw: list[list[Any]], seed: int) -> None:
    catalog, states = _catalog(seed), _states(raw)
    seqs = history_rows(catalog, states)
    codes = {t: c + 1 for c, t in enumerate(EVENT_TYPES[1:])}  # one type left without a code
    bundle = _Recording()
    out = encode(bundle, codes, catalog, states, seqs)
    want = _reference_encoder_inputs(states, seqs, codes, catalog.vectors())
    for got, ref in zip(bundle.seen, want, strict=True):
        assert got.dtype == ref.dtype and got.shape == ref.shape
        assert np.array_equal(got.view(np.uint8), ref.view(np.uint8))
    # users without a known entry get a zero vector, the others the encoder's output
    empty = want[3].sum(axis=1) == 0
    ref_out = bundle.encode_users(*want)
    ref_out[empty] = 0.0
    assert np.array_equal(out.view(np.uint32), ref_out.view(np.uint32))


@settings(max_examples=200, deadline=None)
@given(raw=histories, seed=st.integers(0, 3))
def test_a_batch_of_one_written_in_place_equals_the_plain_path(
    raw: list[list[Any]], seed: int
) -> None:
    """Users one at a time through one set of reused buffers (cold users, unknown and
    new items, stale slots from the user before): the plain path's inputs and output."""
    catalog = _catalog(seed)
    codes = {t: c + 1 for c, t in enumerate(EVENT_TYPES[1:])}
    buffers = EncoderBuffers.around(
        np.full((1, HISTORY_LEN, DIM), np.nan, np.float32),
        np.full((1, HISTORY_LEN), 7, np.int64),
        np.full((1, HISTORY_LEN), np.nan, np.float32),
        np.full((1, HISTORY_LEN), 1.0, np.float32),
    )
    bound_seen = _Recording()
    bound = BoundEncoder(_BoundRecording(bound_seen, buffers), buffers)
    for hist in [*raw, raw[0]]:
        states = _states([hist])
        seqs = history_rows(catalog, states)
        plain = _Recording()
        want = encode(plain, codes, catalog, states, seqs)
        got = encode(bound_seen, codes, catalog, states, seqs, bound)
        for g, ref in zip(bound_seen.seen, plain.seen, strict=True):
            assert g.dtype == ref.dtype and g.shape == ref.shape
            assert np.array_equal(g.view(np.uint8), ref.view(np.uint8))
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


def test_encoder_buffers_refuse_wrong_dtypes_and_shapes() -> None:
    f32, i64 = np.zeros((1, 3), np.float32), np.zeros((1, 3), np.int64)
    vecs = np.zeros((1, 3, 2), np.float32)
    with pytest.raises(ValueError):
        EncoderBuffers.around(vecs, f32, f32, f32)  # types must be int64
    with pytest.raises(ValueError):
        EncoderBuffers.around(vecs, i64, np.zeros((1, 4), np.float32), f32)
    with pytest.raises(ValueError):
        EncoderBuffers.around(vecs, i64, f32, np.zeros((1, 3)))  # float64 mask


@settings(max_examples=300, deadline=None)
@given(raw=histories, seed=st.integers(0, 3), half=st.sampled_from([0.5, 60.0, 86_400.0]))
def test_fold_in_equals_the_numpy_form(raw: list[list[Any]], seed: int, half: float) -> None:
    catalog, states = _catalog(seed), _states(raw)
    seqs = history_rows(catalog, states)
    got = fold_in(catalog, states, seqs, half)
    want = _reference_fold_in(catalog, states, seqs, half)
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


def test_columns_map_types_and_keep_order() -> None:
    """Known answer: every entry in order, a missing type gets the default."""
    states = _states([[(1, "click", 5), (99, "nope", 7)], [], [(2, "view", 9)]])
    catalog = _catalog(0)
    cols = history_columns(
        [s.history for s in states], history_rows(catalog, states), {"click": 3}, -1, np.int64
    )
    assert cols.rows.tolist() == [1, -1, 2]
    assert cols.lengths.tolist() == [2, 0, 1]
    assert cols.value.tolist() == [3, -1, -1]
    assert cols.ts.tolist() == [5, 7, 9]


def test_rows_must_match_the_histories() -> None:
    states = _states([[(1, "click", 5)]])
    try:
        history_columns([s.history for s in states], [np.zeros(2, np.int64)], {}, 0, np.int64)
    except ValueError:
        return
    raise AssertionError("a row count that differs from the history must raise")
