"""What the live scorer depends on (``LiveConfig``) and the counters it keeps (``LiveStats``).

``freshet.wiring.live_config`` maps the settings to a ``LiveConfig``; offline
evaluation and the benchmarks build one directly (its defaults are a default worker's).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from inference.covisit import BACKWARD, DAMPING, FLATNESS
from inference.recommend import RecommendConfig


@dataclass(frozen=True)
class LiveConfig:
    """What the scorer depends on; ``freshet.wiring.live_config`` maps it from settings.

    Attributes:
        recommend: The re-ranking pipeline's knobs (list size, quotas, MMR λ, ...).
        cold_user_events: Users with fewer applied events get the cold-start list.
        covisit_candidates: Co-visitation candidates per user (0 weight: none).
        covisit_window: How many later events of a user pair with each event.
        covisit_width: Followers kept per item in the co-visitation table.
        covisit_backward: Weight of reverse pairs (0: sequential, 1: co-occurrence).
        covisit_flatness: Distance weight ``1 / d ** (1 - flatness)`` in the window.
        covisit_damping: Exponent of a candidate's occurrence in the score's normaliser.
        covisit_half_life_s: Event time over which a pair's weight halves against newer
            pairs (0: never).
        covisit_damping_choices: Dampings the scorer compares on its own stream
            (``inference.damping_choice``) and serves the best of; empty: always
            ``covisit_damping``, which is otherwise served until the evidence is in.
        covisit_vectors: Items the bundle lacks take vectors from their trained
            co-visitation neighbours, re-placed as their table rows change.
        fold_in_half_life_s: Decay of the model-free fold-in over event time.
    """

    recommend: RecommendConfig = field(default_factory=RecommendConfig)
    cold_user_events: int = 2
    covisit_candidates: int = 50
    covisit_window: int = 10
    covisit_width: int = 200
    covisit_backward: float = BACKWARD
    covisit_flatness: float = FLATNESS
    covisit_damping: float = DAMPING
    covisit_half_life_s: float = 500 * 86400.0
    covisit_damping_choices: tuple[float, ...] = (0.25, 0.35, 0.5)
    covisit_vectors: bool = True
    fold_in_half_life_s: float = 6 * 3600.0


@dataclass
class LiveStats:
    """Counters of the real-time path (exported as metrics)."""

    lists: int = 0
    cold_start: int = 0
    model_free: int = 0
    deferred: int = 0
    encoder_ms: deque[float] = field(default_factory=lambda: deque(maxlen=1024))
    recommend_ms: deque[float] = field(default_factory=lambda: deque(maxlen=1024))
    bundle_swaps: int = 0
    bundle_refusals: int = 0
    # (duty, ms) each time housekeeping held the scoring lock (the async shell records).
    lock_hold_ms: deque[tuple[str, float]] = field(default_factory=lambda: deque(maxlen=1024))

    def take_timings(self) -> tuple[list[float], list[float]]:
        """The recent per-batch timings (ms), emptied."""
        enc, rec = list(self.encoder_ms), list(self.recommend_ms)
        self.encoder_ms.clear()
        self.recommend_ms.clear()
        return enc, rec
