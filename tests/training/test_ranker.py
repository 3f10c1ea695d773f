"""The candidate ranker: planted structure, leak-free item context, export parity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from freshet.cli import app
from freshet.simulator.stream import SimConfig, simulate
from inference.bundle import MANIFEST, RANKER, BundleError, load_bundle_data
from inference.onnx_session import LoadedBundle
from inference.ranker_features import LAYOUT, feature_width
from schemas.codec import encode
from training.data import TYPE_VOCAB, InteractionLog, build_log, time_split
from training.export import PARITY_TOL, export_bundle
from training.models.ranker import CandidateRanker
from training.models.retrieval import RetrievalModel, id_index_of
from training.ranker_cases import CandidateSet, RankerConfig, category_codes, item_context
from training.ranker_train import train_ranker

torch.set_num_threads(1)


def test_ranker_learns_a_planted_signal_retrieval_does_not_see() -> None:
    # The target is always the one trending candidate; inner products are noise.
    rng = np.random.default_rng(0)
    n, c, d = 500, 20, 4
    trending = np.zeros((n, c), np.float32)
    label = rng.integers(0, c, n)
    trending[np.arange(n), label] = 1.0
    cands = CandidateSet(
        users=rng.normal(size=(n, d)).astype(np.float32),
        rows=rng.integers(0, 50, size=(n, c)),
        features={
            "ann_score": np.sort(rng.normal(size=(n, c)), axis=1)[:, ::-1].astype(np.float32),
            "log_popularity": rng.uniform(0, 5, (n, c)).astype(np.float32),
            "age_s": np.full((n, c), 86_400.0, np.float32),
            "is_trending": trending,
            "category": rng.integers(0, 5, (n, c)),
        },
        label=label,
    )
    vectors = rng.normal(size=(50, d)).astype(np.float32)
    config = RankerConfig(epochs=8, patience=8, batch_cases=32, threads=1)
    result = train_ranker(cands, vectors, config)

    assert result.retrieval_holdout["ndcg@10"] < 0.5
    assert result.holdout["hr@10"] == 1.0
    assert result.holdout["ndcg@10"] > 0.95
    assert result.gain > 1.0


@pytest.fixture(scope="module")
def small_log() -> InteractionLog:
    return build_log(simulate(SimConfig(users=60, items=40, events=3_000, new_item_rate=2.0)))


def test_item_context_only_counts_earlier_events(small_log: InteractionLog) -> None:
    log = small_log
    ctx = item_context(log, RankerConfig(buckets=8, trending_k=5))
    for j, edge in enumerate(ctx.edges):
        before = log.ts < edge
        expect = log.popularity(np.flatnonzero(before))
        np.testing.assert_allclose(ctx.counts[j], expect, rtol=1e-5)
        assert ctx.trending[j].sum() <= 5
        assert not ctx.trending[j][expect == 0].any()
    # A case at an edge uses that edge; before the first, the first.
    assert ctx.at(ctx.edges[3:4])[0] == 3
    assert ctx.at(ctx.edges[:1] - 1)[0] == 0
    cats = category_codes(log)
    assert (cats > 0).all()  # every simulated item has a category
    assert len(set(cats.tolist())) <= SimConfig().categories


def test_exported_ranker_matches_torch_and_names_its_layout(
    small_log: InteractionLog, tmp_path: Path
) -> None:
    log = small_log
    split = time_split(log)
    torch.manual_seed(0)
    model = RetrievalModel(
        id_index_of(log, split.train),
        log.item_features,
        log.hashing.buckets,
        8,
        4,
        len(TYPE_VOCAB),
        layers=1,
        heads=1,
    )
    ranker = CandidateRanker(feature_width(8), hidden=16)
    ranker.set_normalisation(np.random.default_rng(1).normal(2.0, 3.0, size=(100, ranker.width)))
    path = export_bundle(model, log, split, tmp_path, ranker=ranker)

    bundle = LoadedBundle.load(tmp_path, provider="cpu")
    assert bundle.manifest.has_ranker and bundle.manifest.ranker_layout == LAYOUT
    rng = np.random.default_rng(2)
    for b in (1, 333):  # dynamic batch axis
        rows = rng.normal(2.0, 3.0, size=(b, ranker.width)).astype(np.float32)
        with torch.no_grad():
            expect = ranker.eval()(torch.as_tensor(rows)).numpy()
        got = bundle.rank(rows)
        assert got is not None and got.shape == (b,)
        assert np.abs(got - expect).max() <= PARITY_TOL

    # A ranker trained on another layout is refused, not silently fed the wrong rows.
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["ranker_layout"] = "freshet-ranker-v0"
    (path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="layout"):
        load_bundle_data(path)
    assert RANKER in manifest["files"]


def test_train_cli_ships_the_ranker_when_forced_or_when_it_pays(tmp_path: Path) -> None:
    data = tmp_path / "events.jsonl"
    world = SimConfig(users=80, items=50, events=3000, new_item_rate=0.5)
    data.write_bytes(b"".join(encode(ev) + b"\n" for ev in simulate(world, seed=3)))
    runner = CliRunner(env={"COLUMNS": "200"})
    common = ["train", str(data), "--epochs", "1", "--dim", "8", "--threads", "1"]
    for mode, shipped in (("off", False), ("on", True)):
        bundles = tmp_path / mode
        out = runner.invoke(app, [*common, "--bundle-dir", str(bundles), "--ranker", mode])
        assert out.exit_code == 0, out.output
        manifest = LoadedBundle.load(bundles, provider="cpu").manifest
        assert manifest.has_ranker is shipped
        assert ("ranker" in manifest.metrics) is shipped
        assert ("user-encoder + ranker" in out.output) is shipped
    # auto (the default) always measures it; it ships exactly when the gate passed.
    out = runner.invoke(app, [*common, "--bundle-dir", str(tmp_path / "auto")])
    assert out.exit_code == 0, out.output
    manifest = LoadedBundle.load(tmp_path / "auto", provider="cpu").manifest
    assert manifest.has_ranker is manifest.metrics["ranker"]["included"]
    gate = manifest.metrics["ranker"]["holdout_gain"] >= manifest.metrics["ranker"]["min_gain"]
    assert manifest.has_ranker is gate
    bad = runner.invoke(app, [*common, "--bundle-dir", str(tmp_path / "b"), "--ranker", "yes"])
    assert bad.exit_code != 0
