"""Scheduled retraining: train on a recent window, gate on the served metric, prune.

``retrain`` trains a bundle the way ``freshet train`` does, but into a hidden staging
directory inside the bundle directory, so the new bundle never becomes CURRENT on its
own. Its test NDCG@10 is then compared with the one recorded in the CURRENT bundle's
manifest; only a bundle that does not regress by more than ``max_regression``
(relative) is moved into place and promoted (or any bundle, with ``force``). A refused
bundle is kept, not served, so it can be inspected and promoted by hand with
``freshet models rollback --to <version>``.

The two NDCG figures come from different test windows (each bundle's last 10% of its
own data), so the gate catches a broken run (bad data, a collapsed model), not a
fraction of a percent.

The gate and the pruning plan are pure functions; only ``retrain`` and
``prune_bundles`` touch files.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from inference.bundle import (
    BundleError,
    Manifest,
    fsync_dir,
    list_versions,
    read_current,
    read_manifest,
    set_current,
)
from schemas.events import CatalogEvent, InteractionEvent
from training.pipeline import DEFAULT_RANKER, PipelineResult, run
from training.train import TrainConfig
from training.warm_start import WarmStart, read_warm_start

GATE_METRIC = "ndcg@10"
DEFAULT_MAX_REGRESSION = 0.05
STAGING_PREFIX = ".retrain-"

_UNITS_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*")


def parse_window(text: str) -> int:
    """Milliseconds of a duration such as ``7d``, ``36h``, ``90m``, ``3600s`` or ``2w``."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration like 7d, 36h, 90m, 3600s or 2w")
    ms = int(float(match.group(1)) * _UNITS_MS[match.group(2)])
    if ms <= 0:
        raise ValueError(f"window {text!r} is empty")
    return ms


def recorded_metric(manifest: Manifest, name: str = GATE_METRIC) -> float | None:
    """The bundle's recorded test metric, or None when it has none (or not a number)."""
    value = manifest.metrics.get("test", {}).get(name)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


@dataclass(frozen=True)
class GateDecision:
    """Whether a new bundle may replace the served one, and why.

    Attributes:
        new: The new bundle's test NDCG@10.
        current: The served bundle's recorded test NDCG@10 (None: nothing to compare).
        change: Relative change ``(new - current) / current`` (None without a baseline).
        max_regression: The largest relative drop allowed.
        forced: The gate was overridden.
        promote: The new bundle becomes CURRENT.
        reason: One line for the operator.
    """

    new: float
    current: float | None
    change: float | None
    max_regression: float
    forced: bool
    promote: bool
    reason: str


def gate(
    new: float, current: float | None, max_regression: float, force: bool = False
) -> GateDecision:
    """Decide on promotion: refuse a drop beyond ``max_regression`` unless forced."""
    if max_regression < 0:
        raise ValueError(f"max_regression must be >= 0, got {max_regression}")
    if not math.isfinite(new):
        return GateDecision(new, current, None, max_regression, force, force, "new metric is NaN")
    if current is None:
        reason = "no served bundle with a recorded metric to compare with"
        return GateDecision(new, None, None, max_regression, force, True, reason)
    change = (new - current) / current if current > 0 else (0.0 if new >= current else -1.0)
    within = change >= -max_regression
    if within:
        reason = f"{GATE_METRIC} {change:+.1%} is within the allowed -{max_regression:.1%}"
    else:
        reason = f"{GATE_METRIC} {change:+.1%} regresses beyond the allowed -{max_regression:.1%}"
        if force:
            reason += " (forced)"
    return GateDecision(new, current, change, max_regression, force, within or force, reason)


def prune_plan(versions: Sequence[str], current: str | None, keep: int) -> list[str]:
    """Versions to delete so that ``keep`` remain, oldest first.

    CURRENT and its predecessor (what ``freshet models rollback`` goes back to) are
    never deleted, and they count towards ``keep``; so at least those two remain.
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    ordered = sorted(versions)
    protected: set[str] = set()
    if current is not None and current in ordered:
        protected.add(current)
        older = [v for v in ordered if v < current]
        if older:
            protected.add(older[-1])
    room = max(0, keep - len(protected))
    others = [v for v in ordered if v not in protected]
    kept = set(others[len(others) - room :]) if room else set()
    return [v for v in others if v not in kept]


def prune_bundles(bundle_dir: Path, keep: int) -> list[str]:
    """Delete old bundles so that ``keep`` remain (see ``prune_plan``); returns them."""
    doomed = prune_plan(list_versions(bundle_dir), read_current(bundle_dir), keep)
    for version in doomed:
        # Rename first, so a reader never sees half a bundle that still has a manifest.
        trash = bundle_dir / f".prune-{version}-{secrets.token_hex(4)}"
        os.rename(bundle_dir / version, trash)
        shutil.rmtree(trash, ignore_errors=True)
    if doomed:
        fsync_dir(bundle_dir)
    return doomed


@dataclass(frozen=True)
class RetrainResult:
    """What a retrain run did."""

    bundle: Path
    pipeline: PipelineResult
    decision: GateDecision
    previous: str | None
    previous_metrics: dict[str, float]
    pruned: list[str]

    @property
    def version(self) -> str:
        return self.bundle.name

    @property
    def new_metrics(self) -> dict[str, float]:
        return dict(self.pipeline.results[0].metrics)


def retrain(
    events: Iterable[InteractionEvent | CatalogEvent],
    bundle_dir: Path,
    config: TrainConfig | None = None,
    *,
    max_regression: float = DEFAULT_MAX_REGRESSION,
    force: bool = False,
    keep: int | None = None,
    protocol: str = "time",
    ranker: str = DEFAULT_RANKER,
    show: bool = True,
    warm: bool = False,
) -> RetrainResult:
    """Train on ``events``, gate against CURRENT, promote when allowed, then prune.

    ``warm``: start from the CURRENT bundle's weights where it stores them.

    Raises:
        ValueError: too few events to train on, or a bad argument.
        BundleError: the new bundle failed its checks (nothing was promoted).
    """
    if keep is not None and keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    bundle_dir.mkdir(parents=True, exist_ok=True)
    previous = read_current(bundle_dir)
    previous_metrics: dict[str, float] = {}
    current_value: float | None = None
    start: WarmStart | None = None
    if previous is not None and warm:
        start = read_warm_start(bundle_dir / previous)
    if previous is not None:
        try:
            manifest = read_manifest(bundle_dir / previous)
        except BundleError:
            manifest = None  # a broken CURRENT is no baseline; the new bundle replaces it
        if manifest is not None:
            previous_metrics = {
                k: float(v)
                for k, v in manifest.metrics.get("test", {}).items()
                if isinstance(v, int | float)
            }
            current_value = recorded_metric(manifest)
    # Staging inside bundle_dir: same file system, so the move below is one rename, and
    # the dot keeps it out of list_versions. The pipeline's own CURRENT stays in there.
    staging = bundle_dir / f"{STAGING_PREFIX}{secrets.token_hex(4)}"
    try:
        out = run(events, staging, config, protocol, show=show, ranker=ranker, warm_start=start)
        new_value = float(out.results[0].metrics.get(GATE_METRIC, float("nan")))
        decision = gate(new_value, current_value, max_regression, force)
        final = bundle_dir / out.bundle.name
        os.rename(out.bundle, final)
        fsync_dir(bundle_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if decision.promote:
        set_current(bundle_dir, final.name)
    pruned = prune_bundles(bundle_dir, keep) if keep is not None else []
    return RetrainResult(final, out, decision, previous, previous_metrics, pruned)
