"""The prequential benches' retrain hook: ``training.pipeline.run`` on the events so far."""

from __future__ import annotations

import fcntl
import hashlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from schemas.events import CatalogEvent, InteractionEvent
from training.train import TrainConfig

Event = InteractionEvent | CatalogEvent


class Retrainer:
    """``training.pipeline.run`` on the events so far; bundles cached by data and config.

    The cache lets the trade-off benchmark reuse the bundles of the prequential run on
    the same data instead of training them again.
    """

    def __init__(
        self,
        cache_dir: Path,
        config: TrainConfig,
        *,
        ranker: str = "off",
        provider: str = "cpu",
        log: Callable[[str], None] = print,
    ) -> None:
        self.cache_dir = cache_dir
        self.config = config
        self.ranker = ranker
        self.provider = provider
        self.log = log
        self.seconds: list[float] = []

    def key(self, history: Sequence[Event]) -> str:
        ids = [e.event_id for e in (history[0], history[-1])]
        raw = f"{len(history)}|{ids}|{self.config}|{self.ranker}"
        return hashlib.sha1(raw.encode()).hexdigest()[:16]

    def __call__(self, history: Sequence[Event]) -> Any:
        from inference.onnx_session import LoadedBundle
        from training.pipeline import run

        where = self.cache_dir / self.key(history)
        t0 = time.perf_counter()
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        # One trainer per bundle: a second process that wants the same one (the
        # trade-off bench's shards) waits here and then loads the finished bundle.
        with open(self.cache_dir / f"{where.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            cached = (where / "CURRENT").exists()
            if not cached:
                run(
                    list(history),
                    where,
                    self.config,
                    test_cases=500,
                    show=True,  # epoch progress while the loop waits
                    ranker=self.ranker,
                )
        bundle = LoadedBundle.load(where, provider=self.provider)
        took = time.perf_counter() - t0
        self.seconds.append(took)
        n = sum(isinstance(e, InteractionEvent) for e in history)
        how = "cached" if cached else "trained"
        self.log(f"  bundle at {n} interactions: {how} in {took:.1f} s ({bundle.version})")
        return bundle
