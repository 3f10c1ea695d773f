"""Items that arrive after the bundle take vectors from their co-occurrences, live.

Planted: the bundle's items form two clusters (rows 0-9 along one axis, 10-19 along
another) and hold one item it learnt from no interaction (row 20, its content vector);
a new item, its content along a third axis, and that item are visited right after
cluster B's items. Once the scorer has learnt those pairs, the new item's catalog
vector (what the encoder and the model's scores read) points at cluster B; with the
setting off it keeps its content vector.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from inference.recommend import RecommendConfig
from schemas.events import InteractionEvent
from streams.core.catalog import CatalogRecord
from streams.core.ingest import TouchedUser
from streams.core.live_config import LiveConfig
from streams.core.live_scorer import LiveScorer
from streams.core.state_rules import StateRules, UserState, apply_event

D = 4
AXIS = np.eye(D, dtype=np.float32)


class Manifest:
    has_ranker = False

    def type_id(self, event_type: str) -> int:
        return 1


class Bundle:
    """Two trained clusters and one content-only item; new items point along axis 2."""

    def __init__(self) -> None:
        rng = np.random.default_rng(3)
        vecs = np.stack([AXIS[i // 10] + 0.05 * rng.standard_normal(D) for i in range(20)])
        self.item_vectors = np.vstack([vecs, AXIS[2]]).astype(np.float32)
        self.item_ids = [f"i{r}" for r in range(20)] + ["old-cold"]
        self.item_popularity = np.r_[np.ones(20), 0.0].astype(np.float32)  # training counts
        self.manifest = Manifest()
        self.version = "v1"
        self.provider = "cpu"
        self.history_len = 4

    def encode_users(self, vecs: np.ndarray, *rest: np.ndarray) -> np.ndarray:
        return np.asarray(vecs.mean(axis=1), np.float32)

    def embed_catalog(self, items: list[Any]) -> np.ndarray:
        return np.tile(AXIS[2], (len(items), 1))


def scorer(on: bool) -> LiveScorer:
    live = LiveScorer(
        LiveConfig(
            recommend=RecommendConfig(list_size=5),
            cold_user_events=1,
            covisit_window=2,
            covisit_vectors=on,
        )
    )
    live.swap_bundle(Bundle())
    live.apply_catalog([CatalogRecord(n, ("c",), {}, "", 0, 0) for n in ("new-b", "new-idle")])
    return live


def visits(uid: str, items: list[str]) -> TouchedUser:
    """The user after viewing ``items``, by the worker's own state rule."""
    state = UserState()
    for j, item in enumerate(items):
        event = InteractionEvent(f"{uid}-{j}", uid, item, "view", 1_000 + j)
        state = apply_event(state, event, StateRules())
    return TouchedUser(uid, 0, state, None, None, 1_000)


def cluster_b_then_new(n: int = 20) -> list[TouchedUser]:
    rng = np.random.default_rng(1)
    return [
        visits(
            f"u{u}", [f"i{rng.integers(10, 20)}", "new-b", f"i{rng.integers(10, 20)}", "old-cold"]
        )
        for u in range(n)
    ]


def cosines(vec: np.ndarray) -> np.ndarray:
    return AXIS[:3] @ vec / np.linalg.norm(vec)


def test_a_new_item_visited_after_cluster_b_takes_cluster_b_s_direction() -> None:
    live = scorer(on=True)
    row_b, row_idle = live.catalog.rows(["new-b", "new-idle"])
    assert cosines(live.catalog.vectors()[row_b])[2] > 0.99  # content before any visit
    table = live.catalog.table(1_000)
    live.score(cluster_b_then_new(), 1_000)
    for row in (row_b, live.catalog.rows(["old-cold"])[0]):
        got = cosines(live.catalog.vectors()[row])
        assert got[1] > 0.9 and got[0] < 0.1 and got[2] < 0.3
    # The snapshot the lists read is the same object and sees the placed vector.
    assert live.catalog.table(1_000) is table
    assert np.allclose(table.vectors[row_b], live.catalog.vectors()[row_b])
    # Nobody visited the other new item: untouched, content vector.
    assert cosines(live.catalog.vectors()[row_idle])[2] > 0.99
    # A trained item's vector never moves.
    assert np.allclose(live.catalog.vectors()[:20], Bundle().item_vectors[:20])


def test_off_keeps_the_content_vector() -> None:
    live = scorer(on=False)
    live.score(cluster_b_then_new(), 1_000)
    row_b = live.catalog.rows(["new-b"])[0]
    assert cosines(live.catalog.vectors()[row_b])[2] > 0.99


def test_only_rows_whose_table_row_changed_are_placed_again() -> None:
    """The content prior is kept per row, and a row not in a batch's pairs is left alone."""
    live = scorer(on=True)
    live.score(cluster_b_then_new(), 1_000)
    row_b, row_idle = live.catalog.rows(["new-b", "new-idle"])
    placed = live.catalog.vectors()[row_b].copy()
    # Planted: overwrite the idle item's vector; a batch that never pairs it leaves it.
    live.catalog.place_vectors(np.array([row_idle]), AXIS[3][None])
    live.score([visits("v", ["i0", "i1"])], 2_000)
    assert np.allclose(live.catalog.vectors()[row_idle], AXIS[3])
    assert np.allclose(live.catalog.vectors()[row_b], placed)
    # Cluster A visits after new-b pull it toward A a little; the prior is still the
    # content vector (axis 2), not the placed one.
    rows, _ = live.new_item_vectors.place(live.covisit, live.catalog.vectors(), [row_b])
    assert rows.tolist() == [row_b]
    assert np.allclose(live.new_item_vectors._content[int(row_b)], AXIS[2])
