"""Where freshet's compute goes in the prequential loop: CPU ms per stage, per call.

The quick loop for work on the scorer's per-call cost: freshet alone (no baselines, no
blend validation) on the first ``--limit`` interactions of a ratings file, lists asked
fresh before every ``--score-every``-th eligible event, one bundle trained at
``--retrain-at`` (cached by the prequential bench's retrainer, so a rerun does not
train). A process-CPU timer wraps each stage of ``LiveScorer.score`` and the syncs;
the figures are CPU ms per ``score`` call, inclusive (a nested stage is also counted in
its parent), and freshet's CPU and wall ms per scored event.

The syncs are charged as the worker pays them: the scorer's side (``apply_catalog``,
``set_popularity``, ``set_trending``). What the worker reads from Redis (the trending
sorted set's head, the counts that changed) the loop computes from its own
``StreamState``; that stand-in is Redis's work, not freshet's, so it is timed apart and
taken out of freshet's CPU per scored event (both figures are printed).

    .venv/bin/python -m bench.scorer_stages --file ../shared/data/ml-latest-small/ratings.csv
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.prequential import file_events, variant_settings
from bench.retrainer import Retrainer
from freshet.settings import Settings
from freshet.wiring import live_config
from inference import ann_index, candidates, covisit, item_catalog, recommend
from inference.mmr_kernel import warm_up
from inference.thread_limits import limit_blas_threads
from streams.core import live_scorer
from streams.core.file_reader import layout_of
from training.evaluation import online_freshet
from training.evaluation.prequential import PrequentialConfig, run_prequential, summarise
from training.evaluation.stream_state import StreamState
from training.train import TrainConfig

STAGES: tuple[tuple[Any, str, str], ...] = (
    (live_scorer.LiveScorer, "apply_catalog", "syncs: catalog, popularity, trending"),
    (live_scorer.LiveScorer, "set_popularity", "syncs: catalog, popularity, trending"),
    (live_scorer.LiveScorer, "set_trending", "syncs: catalog, popularity, trending"),
    (live_scorer.LiveScorer, "score", "score, all"),
    (live_scorer.LiveScorer, "embed", "  user vectors (encoder or fold-in)"),
    (item_catalog.ItemCatalog, "table", "  item table snapshot"),
    (live_scorer.LiveScorer, "_learn_covisit", "  co-visitation: learn"),
    (live_scorer.LiveScorer, "_place_new_items", "    co-visitation vectors"),
    (live_scorer, "remember_candidates", "  damping chooser: other dampings"),
    (covisit.CovisitTable, "score_each", "  co-visitation: candidates"),
    (live_scorer, "recommend", "  re-rank pipeline, all"),
    (recommend, "candidate_batch", "    candidates and exclusions"),
    (ann_index.AnnIndex, "search_matrix", "      ANN search"),  # search calls it too
    (candidates, "candidate_rows", "      sources joined, exclusions"),
    (recommend, "_relevance", "    relevance"),
    (recommend, "_prepare", "    cold relevance, blend, quotas"),
    (recommend, "_shortlist", "    shortlist"),
    (recommend, "finish_lists", "    MMR and reasons"),
    (recommend, "_assemble", "    list records"),
)
STAND_IN = "loop's Redis stand-in (not freshet's)"
STAND_INS: tuple[tuple[Any, str, str], ...] = (
    (StreamState, "trending", STAND_IN),
    (StreamState, "count_changes", STAND_IN),
)


def timed(totals: dict[str, list[float]], label: str, fn: Callable[..., Any]) -> Any:
    """``fn`` counting its calls and process CPU seconds into ``totals[label]``."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        c0 = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            slot = totals.setdefault(label, [0.0, 0.0])
            slot[0] += 1
            slot[1] += time.process_time() - c0

    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, required=True, help="a MovieLens ratings.csv")
    parser.add_argument("--limit", type=int, default=30_000, help="first N interactions")
    parser.add_argument("--retrain-at", type=int, default=20_000)
    parser.add_argument("--score-every", type=int, default=10)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE,...",
        help="settings changed from the defaults (as bench.prequential --variant)",
    )
    args = parser.parse_args()

    settings = Settings.from_env({}, onnx_provider="cpu")
    for spec in args.set:
        settings = variant_settings(settings, f"set:{spec}")[1]
    blas = limit_blas_threads(settings.blas_threads)
    warm_up()  # compile the scorer's kernels (or load them) outside the timed loop
    events, _ = file_events(args.file, layout_of(None, None), None, args.limit)
    train = TrainConfig(dim=32, epochs=2, patience=2, valid_cases=500, threads=1, seed=0)
    retrainer = Retrainer(settings.home / "bench-bundles", train, provider="cpu")
    config = PrequentialConfig(
        score_every=args.score_every,
        retrain_every=args.retrain_at,
        fresh=True,
        announce_items=True,
    )
    stream = StreamState()
    model = online_freshet.FreshetOnline(stream, live_config(settings), name="freshet")
    totals: dict[str, list[float]] = {}
    # a stage a work in progress renamed is left out rather than stopping the bench
    wrapped = tuple(stage for stage in STAGES + STAND_INS if hasattr(stage[0], stage[1]))
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in wrapped]
    for owner, name, label in wrapped:
        setattr(owner, name, timed(totals, label, getattr(owner, name)))
    try:
        result = run_prequential(events, [model], config, stream=stream, retrain=retrainer)
    finally:
        for owner, name, fn in originals:  # the modules are shared with any caller
            setattr(owner, name, fn)
    row = summarise(result)["freshet"]
    scored = result.counts["scored"]
    calls = max(int(totals.get("score, all", [1.0])[0]), 1)
    print("conditions:")
    print(f"  {args.file} first {args.limit} interactions, bundle at {args.retrain_at},")
    print(f"  fresh lists, every {args.score_every}th eligible event scored; BLAS {blas}")
    print(f"  settings changed: {args.set or 'none'}")
    print("figures:")
    print(f"  scored {scored}, HR@10 {row['hr@10']:.4f}")
    stand_in = totals.get(STAND_IN, [0.0, 0.0])[1]
    print(
        f"  freshet per scored event: {1000 * (row['cpu_seconds'] - stand_in) / scored:.3f}"
        f" ms CPU ({1000 * row['cpu_seconds'] / scored:.3f} with the loop's Redis stand-in),"
        f" {1000 * row['seconds'] / scored:.3f} ms wall"
    )
    print(f"  CPU ms per score call ({calls} calls), inclusive:")
    for label in dict.fromkeys(label for _, _, label in wrapped):
        n, cpu = totals.get(label, [0.0, 0.0])
        print(f"    {label:42s} {1000 * cpu / calls:7.3f}  ({int(n)} calls)")


if __name__ == "__main__":
    main()
