"""The served co-visitation damping follows what the stream's next events reward.

Planted table: query item ``Q`` is followed by a head item ``H`` (heavy pair, but ``H``
co-occurs with everything, so its occurrence is huge) and by a niche item ``N`` (light
pair, small occurrence). Under damping 0.25 ``H`` ranks first, under 0.5 ``N`` does.
A stream whose users go from ``Q`` to ``H`` must make the chooser serve 0.25; one that
goes from ``Q`` to ``N`` must make it serve 0.5; and a stream that changes its habit
midway must make it change its choice.
"""

from __future__ import annotations

import numpy as np
import pytest

from inference.covisit import CovisitTable, recent_rows
from inference.damping_choice import DampingChooser, remember_candidates, unseen_top

Q, H, N = 0, 1, 2


def planted() -> CovisitTable:
    table = CovisitTable(width=8, damping=0.35)
    table.add([Q, Q], [H, N], [4.0, 1.0])
    others = np.arange(100, 200)
    table.add(others, np.full(others.size, H), np.full(others.size, 10.0))  # H: the head
    table.add([N] * 9, list(range(300, 309)), [1.0] * 9)  # N: occurrence about 10
    return table


def test_the_planted_table_ranks_head_first_low_and_niche_first_high() -> None:
    table = planted()
    hist, w = recent_rows([np.array([Q])], 1, 1.0)
    for damping, first in ((0.25, H), (0.5, N)):
        table.damping = damping
        assert table.score(hist, w, 2)[0][0, 0] == first


def run(chooser: DampingChooser, table: CovisitTable, nexts: list[int], start: int = 0) -> None:
    """Each user looks at Q, is scored (candidates remembered), then goes to ``next``."""
    for i, nxt in enumerate(nexts, start):
        user = f"u{i}"
        table.damping = chooser.served()
        query = recent_rows([np.array([Q])], 1, 1.0)
        served_rows, _ = table.score(*query, 5)
        remember_candidates(
            chooser, table, query, served_rows, [user], [1], lambda _: np.array([Q]), 5
        )
        assert table.damping == chooser.served()  # the alternatives left it as it was
        chooser.credit([user], [2], [np.array([Q, nxt])])


@pytest.mark.parametrize(("habit", "wanted"), [(H, 0.25), (N, 0.5)])
def test_the_chooser_converges_to_the_damping_that_holds_the_next_item(
    habit: int, wanted: float
) -> None:
    chooser = DampingChooser(
        (0.25, 0.35, 0.5), default=0.35, k=1, sample_every=1, half_life=50, min_evidence=20
    )
    table = planted()
    rng = np.random.default_rng(0)
    # 80% of users follow the habit, the rest go somewhere neither damping proposes.
    run(chooser, table, [habit if rng.random() < 0.8 else 50 for _ in range(200)])
    assert chooser.served() == wanted
    rates = chooser.rates()
    assert rates[chooser.choices.index(wanted)] > 0.7


def test_the_chooser_follows_a_stream_that_changes_its_habit() -> None:
    chooser = DampingChooser(
        (0.25, 0.5), default=0.5, k=1, sample_every=1, half_life=30, min_evidence=10
    )
    table = planted()
    run(chooser, table, [H] * 150)
    assert chooser.served() == 0.25
    run(chooser, table, [N] * 150, start=150)
    assert chooser.served() == 0.5


def test_no_evidence_serves_the_default_and_seen_or_stale_next_items_do_not_count() -> None:
    chooser = DampingChooser((0.25, 0.5), default=0.5, k=1, min_evidence=1)
    assert chooser.served() == 0.5
    chooser.remember(["u"], [1], np.array([[[H], [N]]]))
    assert chooser.credit(["u"], [2], [np.array([H, H])]) == 0  # already touched
    chooser.remember(["u"], [3], np.array([[[H], [N]]]))
    assert chooser.credit(["u"], [3], [np.array([Q, H])]) == 0  # no new event yet
    assert chooser.credit(["u"], [9], [np.array([Q, H])]) == 0  # left the history
    assert chooser.evaluations == 0 and chooser.served() == 0.5


def test_a_deficit_within_the_paired_noise_keeps_the_higher_damping() -> None:
    """Known answer: 50 against 46 hits with 20 evaluations where exactly one held the
    item (12 and 8): deficit 4 <= sqrt(20); with 5 and 1 apart, 4 > sqrt(6)."""
    chooser = DampingChooser((0.25, 0.5), default=0.25, k=1, z=1.0, min_evidence=1)
    chooser.hits, chooser.evaluations = np.array([50.0, 46.0]), 100.0
    chooser.apart = np.array([[0.0, 12.0], [8.0, 0.0]])
    assert chooser.served() == 0.5
    chooser.apart = np.array([[0.0, 5.0], [1.0, 0.0]])  # deficit 4 > sqrt(6)
    assert chooser.served() == 0.25


def test_unseen_top_skips_touched_items_and_pads() -> None:
    got = unseen_top(np.array([[5, 3, -1, 7], [1, 2, 3, 4]]), [np.array([3]), np.array([])], 3)
    assert got.tolist() == [[5, 7, -1], [1, 2, 3]]


def test_a_next_item_the_other_sources_hold_is_no_evaluation() -> None:
    """The model's nearest items and the trending head would put H in the list anyway:
    a user going to H says nothing of the damping; one going to N does."""
    chooser = DampingChooser((0.25, 0.5), default=0.5, k=2, sample_every=1, min_evidence=1)
    table = planted()
    query = recent_rows([np.array([Q]), np.array([Q])], 1, 1.0)
    served, _ = table.score(*query, 5)
    nearest = np.array([[7, 8], [7, 8]])
    for shared, nxt, made in ((np.array([H]), H, 0), (np.zeros(0, np.int64), H, 1)):
        remember_candidates(
            chooser,
            table,
            query,
            served,
            ["a", "b"],
            [1, 1],
            lambda _: np.array([Q]),
            5,
            lambda pick: nearest[pick],
            shared,
        )
        assert chooser.credit(["a"], [2], [np.array([Q, nxt])]) == made
    assert chooser.credit(["b"], [2], [np.array([Q, 7])]) == 0  # the model's item


def test_rows_scored_already_are_remembered_as_the_chooser_would_score_them() -> None:
    """Given the draw and every choice's rows (one ``score_each``), the chooser
    remembers what it remembers when it draws and scores the other choices itself."""
    table = planted()
    users, n_events = ["a", "b", "c"], [1, 1, 1]
    query = recent_rows([np.array([Q]), np.array([N]), np.array([Q, N])], 2, 0.8)
    choices = (0.25, 0.35, 0.5)
    served, _ = table.score(*query, 5)
    held = []
    for given in (False, True):
        chooser = DampingChooser(choices, default=0.35, k=3, sample_every=2)
        sampled = scored = None
        if given:
            sampled = chooser.sample(len(users))
            each = table.score_each(*query, 5, choices)
            scored = {d: rows for d, (rows, _) in zip(choices, each, strict=True)}
        remember_candidates(
            chooser,
            table,
            query,
            served,
            users,
            n_events,
            lambda i: np.array([Q, N][: i + 1]),
            5,
            lambda pick: np.full((pick.size, 2), 300, np.int64),
            sampled=sampled,
            scored=scored,
        )
        held.append({u: (n, top.tolist()) for u, (n, top) in chooser._pending.items()})
    assert held[0] == held[1]
    assert sorted(held[0]) == ["a", "c"]  # every second user, from the first


@pytest.mark.parametrize("n_shared", [0, 1, 3])
def test_remembered_rows_keep_the_padded_layout(n_shared: int) -> None:
    """Each remembered user holds ``(choices + 1, k + shared)`` rows: every choice's
    unseen top padded with -1, then the other sources' unseen top and the shared rows
    (the layout np.pad, np.hstack and np.stack gave, built here as the reference)."""
    table = planted()
    users = ["a", "b", "c"]
    query = recent_rows([np.array([Q]), np.array([N]), np.array([Q, N])], 2, 0.8)
    choices, k = (0.25, 0.35, 0.5), 3
    served, _ = table.score(*query, 5)
    chooser = DampingChooser(choices, default=0.35, k=k, sample_every=1)
    shared = np.arange(500, 500 + n_shared, dtype=np.int64)
    nearest = np.array([[7, Q, 8, 9], [N, 7, 300, 8], [301, 302, 7, Q]], np.int64)
    seen = [np.array([Q]), np.array([N, 300]), np.array([Q, N])]
    remember_candidates(
        chooser, table, query, served, users, [1, 1, 1], lambda i: seen[i], 5,
        lambda pick: nearest[pick], shared,
    )  # fmt: skip
    rows = {d: r for d, (r, _) in zip(choices, table.score_each(*query, 5, choices), strict=True)}
    tops = [unseen_top(rows[d], seen, k) for d in choices]
    found = unseen_top(nearest, seen, k)
    if shared.size:
        found = np.hstack([found, np.broadcast_to(shared, (found.shape[0], shared.size))])
    width = found.shape[1]
    tops = [np.pad(t, ((0, 0), (0, width - t.shape[1])), constant_values=-1) for t in tops]
    want = np.stack([*tops, found], axis=1)
    for i, user in enumerate(users):
        n, top = chooser._pending[user]
        assert n == 1 and top.dtype == np.int64
        np.testing.assert_array_equal(top, want[i])


def test_the_kept_answer_follows_every_change_of_evidence() -> None:
    """``served`` reuses its answer while nothing moved and agrees with a fresh
    computation after every credit of a stream that changes its habit."""
    chooser = DampingChooser(
        (0.25, 0.35, 0.5), default=0.35, k=1, sample_every=1, half_life=20, min_evidence=5
    )
    table = planted()
    answers = set()
    for i, nxt in enumerate([H] * 40 + [N] * 80):
        run(chooser, table, [nxt], start=i)
        assert chooser.served() == chooser._served_now()
        answers.add(chooser.served())
    assert answers == {0.35, 0.25, 0.5}  # the default, then each habit's damping
    run(chooser, table, [H] * 80, start=200)
    assert chooser.served() == 0.25
    chooser.z = 1e9  # a knob changed by hand also counts: every choice is good now
    assert chooser.served() == 0.5


def test_the_evidence_arrays_refuse_writes_in_place() -> None:
    """``served`` keeps its answer while ``hits`` and ``apart`` are the same objects,
    so an in-place write, which would leave a stale answer, raises instead."""
    chooser = DampingChooser(choices=(0.25, 0.5))
    chooser.served()
    with pytest.raises(ValueError):
        chooser.hits[0] = 1.0
    with pytest.raises(ValueError):
        chooser.apart[0, 1] = 1.0
