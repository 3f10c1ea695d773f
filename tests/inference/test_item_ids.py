"""The catalog's id map (``inference.item_ids``): lookups see the base, the frozen
pieces and the recent ids; folds made off the lock are adopted by reference, a stale
one changes nothing, and growing N -> 2N ids copies O(N) entries in all, not O(N^2)."""

from __future__ import annotations

import threading

import pytest

from inference import item_ids
from inference.item_ids import IdMap


def _appended(ids: list[str], m: IdMap, new: list[str]) -> None:
    start = len(ids)
    ids.extend(new)
    m.add(new, start)


def test_lookups_see_the_base_and_the_ids_appended_since() -> None:
    ids = ["a", "b"]
    m = IdMap(ids)
    _appended(ids, m, ["c", "d"])
    assert m.rows(["d", "a", "x", "c"]).tolist() == [3, 0, -1, 2]
    assert m.get("c") == 2 and m.get("x") is None and "d" in m and "x" not in m
    assert m.as_dict() == dict(m.view()) == {"a": 0, "b": 1, "c": 2, "d": 3}


def test_recent_ids_are_frozen_by_reference_and_pieces_merge_then_fold_into_the_base(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(item_ids, "RECENT_IDS_MAX", 2)
    ids = [f"b{i}" for i in range(20)]
    m = IdMap(ids)
    base = m._base
    _appended(ids, m, ["n0"])
    recent = m._recent
    _appended(ids, m, ["n1"])  # recent reaches 2: it becomes a piece, not a copy
    assert m._pieces == (recent,) and m._pieces[0] is recent and m._recent == {}
    for i in range(2, 6, 2):
        _appended(ids, m, [f"n{i}", f"n{i + 1}"])
        assert not m.due  # the newer pieces hold under 3x the oldest's ids
    _appended(ids, m, ["n6", "n7"])
    assert m.due  # 6 ids newer than the oldest piece's 2: all four merge
    folded = m.fold()
    assert not folded.into_base and folded.ids == {f"n{i}": 20 + i for i in range(8)}
    _appended(ids, m, ["n8"])  # written while the fold ran: stays in recent
    assert m.rows([*ids[18:], "x"]).tolist() == [*range(18, 29), -1]  # before adopt
    assert m.adopt(folded) and m._pieces == (folded.ids,) and m._base is base
    assert not m.adopt(folded)  # its parts are no longer served
    _appended(ids, m, ["n9"])  # pieces of 8 and 2 ids: 10 * 2 >= 20, into the base
    folded = m.fold()
    assert folded.into_base and len(folded.ids) == 30
    _appended(ids, m, ["n10"])
    assert m.adopt(folded) and m._base is folded.ids and m._pieces == ()
    want = {**{f"b{i}": i for i in range(20)}, **{f"n{i}": 20 + i for i in range(11)}}
    assert m.rows([*want, "x"]).tolist() == [*want.values(), -1]
    assert m.as_dict() == dict(m.view()) == want and m.get("n10") == 30


def test_a_fold_whose_parts_were_replaced_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(item_ids, "RECENT_IDS_MAX", 1)
    ids = ["a", "b", "c", "d", "e", "f"]
    m = IdMap(ids)
    for new in "ghij":
        _appended(ids, m, [new])
    stale = m.fold()  # pieces g-j (4 ids) into the base (6)
    assert m.adopt(m.fold())  # the same merge, made again and adopted first
    assert not m.adopt(stale)
    assert m.rows(["a", "g", "j", "z"]).tolist() == [0, 6, 9, -1]  # unchanged, served


@pytest.mark.parametrize(("recent", "start"), [(512, 16_384), (2048, 65_536)])
def test_growing_n_to_2n_ids_copies_o_n_entries_not_o_n_squared(
    monkeypatch: pytest.MonkeyPatch, recent: int, start: int
) -> None:
    """Every fold due is made at once; the entries copied add up to at most 4N. (The
    module's bound against 1M ids has the same ratio; folding the base every
    ``recent`` ids copied ~1.5N per fold, 32 folds: ~48N.)"""
    monkeypatch.setattr(item_ids, "RECENT_IDS_MAX", recent)
    ids = [f"b{i}" for i in range(start)]
    m = IdMap(ids)
    copied = folds = 0
    most_dicts = 0
    for chunk in range(start // 64):  # 64-id chunks
        _appended(ids, m, [f"n{chunk}.{i}" for i in range(64)])
        while m.due:
            folded = m.fold()
            copied += len(folded.ids)
            folds += 1
            assert m.adopt(folded)
        most_dicts = max(most_dicts, len(m._pieces))
    assert len(ids) == 2 * start and folds > 0
    assert copied <= 4 * start, f"{copied} entries copied in {folds} folds for N={start}"
    assert most_dicts <= 6
    sample = list(range(0, len(ids), 97))
    assert m.rows([ids[r] for r in sample]).tolist() == sample


def test_lookups_while_folds_run_in_a_thread_see_every_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Chunks appended and looked up on this thread while each due fold runs on another
    (as ``LiveRecommender`` does): every lookup finds every id written so far."""
    monkeypatch.setattr(item_ids, "RECENT_IDS_MAX", 1024)
    ids = [f"b{i}" for i in range(20_000)]
    m = IdMap(ids)
    probe = list(range(0, 20_000, 101))
    folds = 0

    def fold_into(box: list[item_ids.FoldedIds]) -> None:
        box.append(m.fold())

    for chunk in range(200):
        running: threading.Thread | None = None
        box: list[item_ids.FoldedIds] = []
        if m.due:
            running = threading.Thread(target=fold_into, args=(box,))
            running.start()
        _appended(ids, m, [f"n{chunk}.{i}" for i in range(128)])
        probe.append(len(ids) - 1)
        assert m.rows([ids[r] for r in probe] + ["x"]).tolist() == [*probe, -1]
        if running is not None:
            running.join()
            assert m.adopt(box[0])
            folds += 1
    assert folds >= 5 and m.rows(ids).tolist() == list(range(len(ids)))
