"""Tune freshet's relevance blend on validation: a held-out early part of the stream.

The first ``share`` of the interactions is replayed through the same prequential loop
with one freshet per candidate choice: a weighting of the blend (``inference.blend``),
and optionally the co-visitation table's damping (how far popular followers are held
back, ``inference.covisit``), retrained once half way so the model's weight is tried
with a bundle. The full run serves the choice with the best HR@10 there, or, among the
choices within one paired standard error of it (which the validation cannot tell
apart), the one whose lists hold the largest long-tail share (``one_se_choice``). The
grid always holds co-visitation alone (model and popularity weights 0), so on
validation freshet never scores clearly below its own co-visitation source.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from freshet.settings import Settings
from freshet.wiring import live_config
from inference.blend import COVISIT_ALONE, BlendWeights, one_se_choice
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


@dataclass(frozen=True)
class Choice:
    """One served configuration tried on validation: the blend and the table's damping."""

    weights: BlendWeights
    damping: float | None = None  # None: the settings' covisit_damping


BENCH_GRID: tuple[Choice, ...] = tuple(
    Choice(w)
    for w in (
        COVISIT_ALONE,
        BlendWeights(model=0.25, covisit=1.0, popularity=0.0),
        BlendWeights(model=0.25, covisit=1.0, popularity=0.1),
        BlendWeights(model=1.0, covisit=1.0, popularity=0.0),
    )
)
"""Four weightings, so that the validation prefix can be a quarter of the stream.

The damping is not tuned here: on both data sets an early prefix preferred the value
the later stream did not (``docs/benchmarks/README.md``, "Real data"), so it is the
settings' ``covisit_damping``, chosen on the simulator's cold items and long tail.
"""


def label(c: Choice | BlendWeights) -> str:
    w, d = (c.weights, c.damping) if isinstance(c, Choice) else (c, None)
    text = f"model {w.model:g} / covisit {w.covisit:g} / popularity {w.popularity:g}"
    return text if d is None else f"{text} / damping {d:g}"


def weighted(settings: Settings, c: Choice | BlendWeights) -> Settings:
    """``settings`` serving the choice (or only the weighting) ``c``."""
    w = c.weights if isinstance(c, Choice) else c
    out = settings.with_(
        model_weight=w.model, covisit_weight=w.covisit, popularity_weight=w.popularity
    )
    if isinstance(c, Choice) and c.damping is not None:
        return out.with_(covisit_damping=c.damping)
    return out


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
    grid: Sequence[Choice] = BENCH_GRID,
    log: Callable[[str], None] = print,
    tie_se: float = 1.0,
) -> tuple[Choice, dict[str, dict[str, float]]]:
    """The choice to serve after the validation prefix, and every choice's figures there.

    ``tie_se``: paired standard errors within which choices tie on HR@10 (0: the best
    HR@10 alone); a tie goes to the larger long-tail share.
    """
    prefix = validation_prefix(events, share)
    n = sum(isinstance(e, InteractionEvent) for e in prefix)
    stream = StreamState()
    models: list[OnlineModel] = [
        FreshetOnline(stream, live_config(weighted(settings, w)), name=label(w)) for w in grid
    ]
    half = n // 2 + 1  # once, half way: not again at the prefix's end, where it serves nothing
    cfg = replace(config, retrain_every=half, warmup_events=0)
    log(f"blend validation: first {n} interactions, {len(grid)} choices, retrain at {half}")
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
            "cold_item/hr@10": summary[label(w)]["cold_item/hr@10"],
            "long_tail_share": summary[label(w)]["long_tail_share"],
        }
        for w in grid
    }
    at = [result.names.index(label(w)) for w in grid]
    hits = result.ranks[at] < result.k
    tail = np.array([scored[label(w)]["long_tail_share"] for w in grid])
    best = grid[one_se_choice(hits, tail, tie_se)]
    for w in grid:
        served = " <- served" if w == best else ""
        r = scored[label(w)]
        log(
            f"  {label(w)}: HR@10 {r['hr@10']:.4f}, cold items {r['cold_item/hr@10']:.4f}, "
            f"long-tail {r['long_tail_share']:.3f}{served}"
        )
    return best, scored
