"""Prequential streaming quality: freshet's online path against online baselines.

Replays a data set in time order (the simulator, or a JSONL/CSV file) through the
worker's own code, in-process: ``apply_events`` for state and popularity,
``LiveScorer.score`` for lists, bundles retrained with ``training.pipeline.run``
every ``--retrain-every`` interactions and swapped in with ``swap_bundle``. Before each
interaction the user's current list is scored (HR@10, NDCG@10) against the item that
came next (see ``training.evaluation.prequential`` for the protocol: every eligible
event scored from the start, every touched item excluded, ``--fresh`` lists asked just
before each event). Before the run, freshet's blend of model, co-visitation and
popularity is tuned on the first ``--valid-share`` of the stream
(``bench.blend_validation``). Baselines run through the same loop in the same run:
most-popular, trending, online item-kNN (the shared data README's), river's FunkMF,
EASE refit at each retrain, and ablations of freshet: its bundle frozen (lists computed
at each swap, not refreshed after events), without the co-visitation source, and
opt-in, co-visitation alone and without diversity quotas.

    .venv/bin/python -m bench.prequential --quick --out docs/benchmarks
    .venv/bin/python -m bench.prequential --file ../shared/data/ml-latest-small/ratings.csv \
        --fresh --plot docs/benchmarks/prequential_real.png
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.blend_validation import tune_on_prefix, weighted
from bench.prequential_plots import plot_hr_over_stream, plot_prequential
from bench.retrainer import Retrainer
from freshet.settings import Settings
from freshet.simulator.stream import SimConfig, simulate
from freshet.wiring import live_config
from inference.blend import COVISIT_ALONE
from inference.thread_limits import limit_blas_threads
from schemas.events import CatalogEvent, InteractionEvent
from streams.core.file_reader import CsvLayout, layout_of, read_events
from training.evaluation.online_baselines import (
    BatchEASE,
    OnlineItemKNN,
    OnlinePopular,
    OnlineTrending,
    RiverMF,
)
from training.evaluation.online_freshet import FreshetOnline
from training.evaluation.prequential import (
    Event,
    OnlineModel,
    PrequentialConfig,
    PrequentialResult,
    StreamState,
    run_prequential,
    summarise,
)
from training.train import TrainConfig

BASELINES = (
    "most-popular",
    "trending",
    "item-knn",
    "river-funkmf",
    "ease",
    "freshet-frozen",
    "freshet-no-covisit",
)
QUICK_SIM = {"users": 800, "items": 1000, "events": 16_000}
FULL_SIM = {"users": 20_000, "items": 10_000, "events": 300_000}
QUICK_FILE_EVENTS = 25_000
ABLATIONS = ("freshet-covisit-alone", "freshet-no-diversity")
"""Opt-in freshet variants (``--baselines``): each costs a whole freshet in the loop."""
NO_DIVERSITY = {
    "mmr_lambda": 1.0,
    "longtail_share": 0.0,
    "exploration_slots": 0,
    "trending_slots": 0,
    "new_item_slots": 0,
}


def sim_events(users: int, items: int, events: int, seed: int) -> list[Event]:
    """A simulated shop with arriving users and items and some removals."""
    config = SimConfig(
        users=users,
        items=items,
        events=events,
        new_user_rate=2.0,
        new_item_rate=1.0,
        removal_rate=0.2,
    )
    return list(simulate(config, seed=seed))


def file_events(
    path: Path,
    layout: CsvLayout | None = None,
    items: str | None = None,
    limit: int = 0,
    ratings_as_interactions: bool = False,
) -> tuple[list[Event], dict[str, int]]:
    """Events of a data file (``streams.core.file_reader.read_events``) in time order.

    Sorted by (timestamp, file order), stable, item side file first; refused lines are
    counted and skipped; ``limit`` keeps the first that many interactions (0: all).
    """
    refused: dict[str, int] = {}
    events = list(
        read_events(
            path,
            refused,
            layout=layout,
            items=items,
            ratings_as_interactions=ratings_as_interactions,
        )
    )
    order = sorted(range(len(events)), key=lambda i: events[i].ts)  # stable
    events = [events[i] for i in order]
    if limit:
        ends = np.cumsum([isinstance(e, InteractionEvent) for e in events])
        events = events[: int(np.searchsorted(ends, limit, side="right"))]
    return events, refused


def build_models(
    stream: StreamState,
    names: Sequence[str],
    settings: Settings,
    seed: int,
    *,
    freshet: bool = True,
) -> list[OnlineModel]:
    """Fresh freshet first (unless ``freshet`` is false), then the named baselines."""
    makers: dict[str, Callable[[], OnlineModel]] = {
        "most-popular": lambda: OnlinePopular(stream),
        "trending": lambda: OnlineTrending(stream),
        "item-knn": lambda: OnlineItemKNN(stream),
        "river-funkmf": lambda: RiverMF(stream, seed=seed),
        "ease": lambda: BatchEASE(stream),
        "freshet-frozen": lambda: FreshetOnline(
            stream, live_config(settings), name="freshet-frozen", frozen=True
        ),
        "freshet-no-covisit": lambda: FreshetOnline(
            stream, live_config(settings.with_(covisit_weight=0.0)), name="freshet-no-covisit"
        ),
        "freshet-covisit-alone": lambda: FreshetOnline(
            stream,
            live_config(weighted(settings, COVISIT_ALONE)),
            name="freshet-covisit-alone",
        ),
        "freshet-no-diversity": lambda: FreshetOnline(
            stream, live_config(settings.with_(**NO_DIVERSITY)), name="freshet-no-diversity"
        ),
    }
    if not freshet:
        return [makers[n]() for n in names]
    fresh = FreshetOnline(stream, live_config(settings), name="freshet")
    return [fresh, *(makers[n]() for n in names)]


def variant_settings(settings: Settings, spec: str) -> tuple[str, Settings]:
    """``NAME:FIELD=VALUE,...`` as a name and ``settings`` with those fields changed.

    >>> name, s = variant_settings(Settings(), "succ:covisit_backward=0,covisit_window=3")
    >>> name, s.covisit_backward, s.covisit_window
    ('succ', 0.0, 3)
    """
    name, _, body = spec.partition(":")
    changes: dict[str, Any] = {}
    for pair in filter(None, body.split(",")):
        key, _, raw = pair.partition("=")
        key = key.strip()
        if not hasattr(settings, key):
            raise ValueError(f"--variant {spec!r}: no setting {key!r}")
        kind = type(getattr(settings, key))
        changes[key] = raw.strip().lower() in {"1", "true"} if kind is bool else kind(raw)
    return name.strip(), settings.with_(**changes)


def diversity_space(models: Sequence[OnlineModel]) -> np.ndarray | None:
    """Item vectors of the (fresh) freshet model's final catalog: ILD's common space."""
    for model in models:
        if isinstance(model, FreshetOnline):
            return model.item_vectors()
    return None


def conditions(extra: dict[str, Any]) -> dict[str, Any]:
    import onnxruntime
    import river
    import torch

    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "river": river.__version__,
        **extra,
    }


def table_rows(summary: dict[str, dict[str, float]], k: int = 10) -> list[list[str]]:
    rows = []
    for name, r in summary.items():
        rows.append(
            [
                name,
                f"{r[f'hr@{k}']:.4f}",
                f"{r[f'ndcg@{k}']:.4f}",
                f"{r[f'cold_user/hr@{k}']:.4f} / {r[f'cold_user/ndcg@{k}']:.4f}",
                f"{r[f'cold_item/hr@{k}']:.4f} / {r[f'cold_item/ndcg@{k}']:.4f}",
                f"{r['coverage']:.3f}",
                f"{r['long_tail_share']:.3f}",
                f"{r.get('ild', float('nan')):.3f}",
                f"{r['seconds']:.1f}",
            ]
        )
    return rows


HEADER = [
    "model",
    "HR@10",
    "NDCG@10",
    "cold users HR/NDCG",
    "cold items HR/NDCG",
    "coverage",
    "long-tail",
    "ILD",
    "model s",
]


def markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def run_benchmark(
    events: Sequence[Event],
    *,
    baselines: Sequence[str],
    config: PrequentialConfig,
    retrainer: Retrainer | None,
    settings: Settings,
    seed: int = 0,
    extra_models: Callable[[StreamState], list[OnlineModel]] | None = None,
    freshet: bool = True,
) -> tuple[PrequentialResult, dict[str, dict[str, float]], float]:
    """One prequential run; returns the raw result, the summary and the wall time."""
    stream = StreamState()
    models = build_models(stream, baselines, settings, seed, freshet=freshet)
    if extra_models is not None:
        models += extra_models(stream)
    t0 = time.perf_counter()
    total = sum(isinstance(e, InteractionEvent) for e in events)
    step = max(total // 10, 1)
    marks = iter(range(step, total + step, step))
    nxt = next(marks)

    def progress(applied: int) -> None:
        nonlocal nxt
        while applied >= nxt:
            print(f"  {applied}/{total} interactions, {time.perf_counter() - t0:.0f} s")
            nxt = next(marks, total + 1)

    result = run_prequential(
        events, models, config, stream=stream, retrain=retrainer, progress=progress
    )
    wall = time.perf_counter() - t0
    summary = summarise(result, diversity_space(models))
    for model in models:  # freshet's CPU without the loop's stand-in for Redis
        stand_in = getattr(model, "stand_in_cpu_s", None)
        if stand_in is not None and model.name in summary:
            row = summary[model.name]
            row["stand_in_cpu_seconds"] = stand_in
            row["cpu_seconds_without_stand_in"] = row["cpu_seconds"] - stand_in
    for model in models:
        close = getattr(model, "close", None)
        if close is not None:
            close()
    return result, summary, wall


def cpu_per_event_lines(summary: dict[str, dict[str, float]], events: int) -> str:
    """Each model's process CPU per event of the stream; freshet's also without the
    loop's stand-in for Redis (the changed counts and the trending head that Redis
    serves the worker are computed by the loop's ``StreamState`` and timed apart)."""
    lines = ["CPU ms per event (process CPU over the whole stream):"]
    n = max(events, 1)
    for name, row in summary.items():
        line = f"  {name}: {1000 * row['cpu_seconds'] / n:.3f}"
        if "cpu_seconds_without_stand_in" in row:
            line += (
                f" ({1000 * row['cpu_seconds_without_stand_in'] / n:.3f} without the loop's"
                f" Redis stand-in, {1000 * row['stand_in_cpu_seconds'] / n:.3f})"
            )
        lines.append(line)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, help="JSONL/CSV events (default: simulator)")
    parser.add_argument(
        "--quick", action="store_true", help="small simulated shop, or a file's first 25k"
    )
    parser.add_argument("--preset", help="file layout: movielens (.dat) or ml-csv")
    parser.add_argument("--columns", help="file columns: user=userId,item=movieId,...")
    parser.add_argument("--delimiter", default=",", help="file field separator")
    parser.add_argument("--no-header", action="store_true", help="file has no header")
    parser.add_argument("--ts-unit", default="s", choices=["s", "ms"])
    parser.add_argument(
        "--item-file", help="item side file (titles, genres); default: movies.* next to --file"
    )
    parser.add_argument(
        "--ratings-as-interactions",
        action="store_true",
        help="a rating's value is ignored: every rating is a plain interaction",
    )
    parser.add_argument("--users", type=int)
    parser.add_argument("--items", type=int)
    parser.add_argument("--events", type=int)
    parser.add_argument(
        "--limit", type=int, default=0, help="file: the first N interactions (--quick: 25,000)"
    )
    parser.add_argument("--retrain-every", type=int, default=0, help="0: events/3")
    parser.add_argument("--score-every", type=int, default=1)
    parser.add_argument(
        "--warmup", type=int, default=0, help="interactions applied before scoring starts"
    )
    parser.add_argument(
        "--fresh", action="store_true", help="ask each list anew just before each scored event"
    )
    parser.add_argument("--batch-ms", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=0, help="0: 3 quick, 8 full")
    parser.add_argument("--ranker", default="off", choices=["off", "auto", "on"])
    parser.add_argument(
        "--baselines",
        nargs="*",
        default=list(BASELINES),
        help=f"of {', '.join(BASELINES + ABLATIONS)}",
    )
    parser.add_argument(
        "--valid-share",
        type=float,
        default=0.25,
        help="tune freshet's blend on this first share of the stream (0: settings' weights)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:FIELD=VALUE,...",
        help="one more freshet in the same loop: the served settings with these changed",
    )
    parser.add_argument(
        "--no-freshet", action="store_true", help="baselines only (no bundle, no retrains)"
    )
    parser.add_argument("--cache", type=Path, help="bundle cache (default: FRESHET_HOME)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the summary here")
    parser.add_argument("--plot", type=Path, help="write HR@10 over the stream (PNG) here")
    parser.add_argument(
        "--out", type=Path, help="write prequential.json and prequential.png in this folder"
    )
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    size = QUICK_SIM if args.quick else FULL_SIM
    users = args.users or size["users"]
    items = args.items or size["items"]
    n_events = args.events or size["events"]
    refused: dict[str, int] = {}
    if args.file:
        limit = args.limit or (QUICK_FILE_EVENTS if args.quick else 0)
        try:
            layout = layout_of(
                args.preset,
                args.columns,
                delimiter=args.delimiter,
                header=not args.no_header,
                ts_unit=args.ts_unit,
            )
        except ValueError as exc:
            parser.error(str(exc))
        events, refused = file_events(
            args.file, layout, args.item_file, limit, args.ratings_as_interactions
        )
        source = f"{args.file}" + (f" (first {limit} interactions)" if limit else "")
    else:
        events = sim_events(users, items, n_events, args.seed)
        source = f"simulator users={users} items={items} events={n_events} seed={args.seed}"
    n_inter = sum(isinstance(e, InteractionEvent) for e in events)
    has_catalog = any(isinstance(e, CatalogEvent) for e in events)
    retrain_every = args.retrain_every or max(-(-n_inter // 3), 1)  # no retrain at the end
    config = PrequentialConfig(
        batch_ms=args.batch_ms,
        score_every=args.score_every,
        retrain_every=retrain_every,
        warmup_events=args.warmup,
        fresh=args.fresh,
        announce_items=not has_catalog,
    )
    train_config = TrainConfig(
        dim=32,
        epochs=args.epochs or (3 if args.quick else 8),
        patience=2,
        valid_cases=500,
        threads=args.threads,
        seed=args.seed,
    )
    settings = Settings.from_env()  # FRESHET_ONNX_PROVIDER picks cpu or cuda
    # As the worker does: numpy's and faiss's BLAS pools spin a thread per core, which on
    # a busy 2-core host turned every 1-query matmul into a wait for a second thread.
    blas = limit_blas_threads(settings.blas_threads)
    cache = args.cache or settings.home / "bench-bundles"
    retrainer = Retrainer(cache, train_config, ranker=args.ranker, provider=settings.onnx_provider)
    print(f"prequential: {source}; {n_inter} interactions, retrain every {retrain_every}")
    validation: dict[str, Any] = {}
    if args.valid_share > 0 and not args.no_freshet:
        best, scored = tune_on_prefix(events, args.valid_share, settings, config, retrainer)
        settings = weighted(settings, best)
        validation = {"share": args.valid_share, "served": str(best), "weightings": scored}
    try:
        variants = [variant_settings(settings, spec) for spec in args.variant]
    except ValueError as exc:
        parser.error(str(exc))

    def variant_models(stream: StreamState) -> list[OnlineModel]:
        return [FreshetOnline(stream, live_config(s), name=n) for n, s in variants]

    result, summary, wall = run_benchmark(
        events,
        baselines=args.baselines,
        config=config,
        retrainer=None if args.no_freshet else retrainer,
        settings=settings,
        seed=args.seed,
        extra_models=variant_models if variants else None,
        freshet=not args.no_freshet,
    )
    counts = result.counts
    note = (
        f"{counts['scored']} of {counts['eligible']} eligible events scored "
        f"(every {args.score_every}); the first {args.warmup} interactions are warm-up "
        f"(applied, not scored); a user's first event and events of an item the user "
        f"already touched are applied, not scored; lists exclude every touched item; "
        + (
            "lists asked fresh before each event"
            if args.fresh
            else f"lists refresh per {args.batch_ms} ms micro-batch"
        )
    )
    report = {
        "benchmark": "prequential",
        "quick": bool(args.quick),
        "source": source,
        "refused_lines": refused,
        "conditions": conditions(
            {
                "onnx_provider": settings.onnx_provider,
                "threads": args.threads,
                "interactions": n_inter,
                "items_seen": len(result.item_ids),
                "retrain_every": retrain_every,
                "train_epochs": train_config.epochs,
                "train_dim": train_config.dim,
                "ranker": args.ranker,
                "blas_threads": blas,
                "variants": list(args.variant),
                "ratings_as_interactions": args.ratings_as_interactions,
                "batch_ms": args.batch_ms,
                "score_every": args.score_every,
                "warmup": args.warmup,
                "fresh": args.fresh,
                "cold_user_events": config.cold_user_events,
                "cold_item_interactions": config.cold_item_interactions,
            }
        ),
        "counts": counts,
        "note": note,
        "wall_s": round(wall, 1),
        "retrain_s": [round(s, 1) for s in retrainer.seconds],
        "blend_validation": validation,
        "models": summary,
    }
    print(note)
    print(markdown(HEADER, table_rows(summary)))
    print(f"wall {wall:.0f} s, of which retraining {sum(retrainer.seconds):.0f} s")
    print(cpu_per_event_lines(summary, counts["interactions"]))
    for path in [args.json, args.out and args.out / "prequential.json"]:
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(report, indent=2) + "\n")
    if args.out:
        plot_prequential(args.out)
    if args.plot:
        plot_hr_over_stream(result, args.plot)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
