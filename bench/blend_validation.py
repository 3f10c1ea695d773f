"""Tune freshet's relevance blend on validation: a held-out early part of the stream.

The first ``share`` of the interactions is replayed through the same prequential loop
with one freshet per candidate weighting (``inference.blend``), retrained once half way
so the model's weight is tried with a bundle; the weighting with the best HR@10 there is
the one the full run serves. The grid always holds co-visitation alone (model and
popularity weights 0), so on validation freshet never scores below its own
co-visitation source.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from freshet.settings import Settings
from freshet.wiring import live_config
from inference.blend import COVISIT_ALONE, BlendWeights
from schemas.events import InteractionEvent
from training.evaluation.online_freshet import FreshetOnline
from training.evaluation.prequential import (
    Event,
    OnlineModel,
    PrequentialConfig,
    StreamState,
    run_prequential,
    summarise,
)

BENCH_GRID: tuple[BlendWeights, ...] = (
    COVISIT_ALONE,
    BlendWeights(model=0.0, covisit=1.0, popularity=0.1),
    BlendWeights(model=0.25, covisit=1.0, popularity=0.0),
    BlendWeights(model=0.25, covisit=1.0, popularity=0.1),
    BlendWeights(model=1.0, covisit=1.0, popularity=0.0),
    BlendWeights(model=1.0, covisit=1.0, popularity=0.1),
)
"""Six weightings: few enough that the validation replay stays a fraction of the run."""


def label(w: BlendWeights) -> str:
    return f"model {w.model:g} / covisit {w.covisit:g} / popularity {w.popularity:g}"


def weighted(settings: Settings, w: BlendWeights) -> Settings:
    """``settings`` serving the weighting ``w``."""
    return settings.with_(
        model_weight=w.model, covisit_weight=w.covisit, popularity_weight=w.popularity
    )


def validation_prefix(events: Sequence[Event], share: float) -> list[Event]:
    """The events up to the first ``share`` of the interactions (catalog events kept)."""
    total = sum(isinstance(e, InteractionEvent) for e in events)
    want, seen = max(int(total * share), 1), 0
    for n, event in enumerate(events):
        seen += isinstance(event, InteractionEvent)
        if seen >= want:
            return list(events[: n + 1])
    return list(events)


def tune_on_prefix(
    events: Sequence[Event],
    share: float,
    settings: Settings,
    config: PrequentialConfig,
    retrain: Callable[[Sequence[Event]], Any] | None,
    grid: Sequence[BlendWeights] = BENCH_GRID,
    log: Callable[[str], None] = print,
) -> tuple[BlendWeights, dict[str, dict[str, float]]]:
    """The best weighting on the validation prefix, and every weighting's HR/NDCG there."""
    prefix = validation_prefix(events, share)
    n = sum(isinstance(e, InteractionEvent) for e in prefix)
    stream = StreamState()
    models: list[OnlineModel] = [
        FreshetOnline(stream, live_config(weighted(settings, w)), name=label(w)) for w in grid
    ]
    cfg = replace(config, retrain_every=max(n // 2, 1), warmup_events=0)
    log(f"blend validation: first {n} interactions, {len(grid)} weightings, retrain at {n // 2}")
    step, mark = max(n // 5, 1), [max(n // 5, 1)]

    def progress(applied: int) -> None:
        if applied >= mark[0]:
            log(f"  validation: {applied}/{n} interactions")
            mark[0] += step

    result = run_prequential(prefix, models, cfg, stream=stream, retrain=retrain, progress=progress)
    summary = summarise(result)
    scored = {
        label(w): {
            "hr@10": summary[label(w)]["hr@10"],
            "ndcg@10": summary[label(w)]["ndcg@10"],
            "cases": summary[label(w)]["cases"],
        }
        for w in grid
    }
    best = max(grid, key=lambda w: scored[label(w)]["hr@10"])  # first of equals
    for w in grid:
        served = " <- served" if w == best else ""
        log(f"  {label(w)}: HR@10 {scored[label(w)]['hr@10']:.4f}{served}")
    return best, scored
