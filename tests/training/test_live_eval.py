"""``freshet evaluate``'s scorers: the worker's LiveScorer, checked against the raw bundle."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from freshet.cli import app
from freshet.simulator.stream import SimConfig, simulate
from inference.onnx_session import LoadedBundle
from schemas.codec import encode
from streams.core.live_config import LiveConfig
from training.data import TYPE_VOCAB, build_log
from training.evaluation.live_eval import LiveListScorer, LiveModelScorer, live_for_log
from training.evaluation.protocols import build_cases
from training.pipeline import make_split


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[LoadedBundle, list, object]:
    tmp = tmp_path_factory.mktemp("live_eval")
    data = tmp / "events.jsonl"
    world = SimConfig(users=120, items=300, events=3000)
    events = list(simulate(world, seed=3))
    # trained without five items: they are new to the bundle and get content vectors
    hidden = {f"i{n}" for n in range(5)} & {ev.item_id for ev in events}
    kept = [ev for ev in events if ev.item_id not in hidden]
    data.write_bytes(b"".join(encode(ev) + b"\n" for ev in kept))
    out = CliRunner().invoke(
        app,
        ["train", str(data), "--bundle-dir", str(tmp / "b"), "--epochs", "1", "--dim", "16"],
    )
    assert out.exit_code == 0, out.output
    bundle = LoadedBundle.load(tmp / "b", provider="cpu")
    return bundle, events, build_log(events, bundle.manifest.hashing)


def test_the_model_row_equals_the_bundle_run_directly(served: tuple) -> None:
    """LiveScorer.embed over the held state gives the encoder's own scores (known answer)."""
    bundle, events, log = served
    split = make_split(log, "loo")
    cases = build_cases(log, split, "test", bundle.history_len, 300, 0)
    live = live_for_log(bundle, log, events, split.train)
    got = LiveModelScorer(live, log, bundle.history_len).score(cases)
    # The reference: the bundle's vectors, content vectors for items it does not know,
    # and one encoder call on the case histories as the protocol builds them.
    rows = np.array([bundle.row_of.get(i, -1) for i in log.item_ids])
    vecs = np.zeros((log.n_items, bundle.dim), np.float32)
    vecs[rows >= 0] = bundle.item_vectors[rows[rows >= 0]]
    vecs[rows < 0] = bundle.embed_items(log.item_features[rows < 0])
    hist = cases.history
    types = np.array([bundle.manifest.type_id(t) for t in TYPE_VOCAB])[hist.types]
    users = bundle.encode_users(
        vecs[np.clip(hist.items, 0, None)] * hist.mask[:, :, None], types, hist.gaps, hist.mask
    )
    want = users @ vecs.T
    some = hist.mask.sum(axis=1) > 0
    assert (rows < 0).any() and some.sum() >= 20  # new items and real histories are covered
    np.testing.assert_allclose(got[some], want[some], rtol=1e-4, atol=1e-4)
    assert not got[~some].any()  # no history: no vector, as the worker serves cold start


def test_the_lists_row_scores_published_lists_without_seen_items(served: tuple) -> None:
    bundle, events, log = served
    split = make_split(log, "loo")
    cases = build_cases(log, split, "test", bundle.history_len, 200, 0)
    config = LiveConfig()
    live = live_for_log(bundle, log, events, split.train, config)
    assert not live.covisit.weight.any()
    scorer = LiveListScorer(live, log, split.train, bundle.history_len)
    assert live.covisit.weight.any()  # the training part taught co-visitation
    scores = scorer.score(cases)
    on = np.isfinite(scores)
    k = config.recommend.list_size
    assert (on.sum(axis=1) > 0).all() and (on.sum(axis=1) <= k).all()
    for row, n in zip(scores, on.sum(axis=1), strict=True):  # places n..1, once each
        assert sorted(row[np.isfinite(row)].tolist()) == list(range(1, n + 1))
    assert not on[cases.seen_rows, cases.seen_items].any()
