"""freshet itself in the prequential loop: the worker's ``LiveScorer``, called directly.

It is fed from in-memory views of the loop's ``StreamState`` instead of Redis: trending
from the same decayed sums, counts from the same popularity, the catalog from the
catalog events applied so far. They are synced on the worker's timers (catalog 0.5 s,
trending 1 s, popularity 10 s), measured in event time.

``frozen=True`` is the ablation "no fresh embeddings": user vectors and lists are
computed once for every known user when a bundle is swapped in, and not refreshed
after events; a user who first shows up later gets the cold-start list of that moment.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from streams.core.catalog import CATALOG_LOG_PAGE
from streams.core.ingest import TouchedUser
from streams.core.live_config import LiveConfig
from streams.core.live_scorer import LiveScorer
from streams.core.state_rules import UserState
from training.evaluation.stream_state import IntArray, StreamState

_TIMERS_MS = {"catalog": 500, "trending": 1_000, "popularity": 10_000}
_COLD_EVERY_MS = 1_000  # the cold-start list is recomputed at most this often
_COLD_USER = "\x00cold-start"


class FreshetOnline:
    """``OnlineModel`` around one ``LiveScorer``."""

    def __init__(
        self,
        stream: StreamState,
        config: LiveConfig | None = None,
        *,
        name: str = "freshet",
        frozen: bool = False,
        k: int = 10,
        chunk: int = 256,
        seed: int = 0,
    ) -> None:
        self.name = name
        self.stream = stream
        self.frozen = frozen
        self.k = k
        self.chunk = chunk
        self.live = LiveScorer(config, seed=seed)
        self._catalog_read = 0  # catalog log entries applied so far
        self._counts_read = 0  # count log entries synced so far (0: sync every count)
        self._synced = dict.fromkeys(_TIMERS_MS, -(10**18))
        self._cold = np.zeros(0, np.int64)
        self._cold_at = -(10**18)
        self._now = -(10**18)  # the newest time the loop told
        # CPU seconds spent in the loop's stand-in for what Redis serves the worker (the
        # changed counts, the trending head): Redis's work, not freshet's
        self.stand_in_cpu_s = 0.0

    # --- the worker's syncs, from memory ----------------------------------------------
    def _sync(self, now_ms: int, force: bool = False) -> None:
        due = [n for n, every in _TIMERS_MS.items() if force or now_ms - self._synced[n] >= every]
        for name in due:
            self._synced[name] = now_ms
        if "catalog" in due:
            log = self.stream.catalog_log
            while self._catalog_read < len(log):  # in the worker's pages
                page = log[self._catalog_read : self._catalog_read + CATALOG_LOG_PAGE]
                self.live.apply_catalog(page)
                self._catalog_read += len(page)
        if "popularity" in due:  # the counts that changed since the last sync
            c0 = time.process_time()
            changed, self._counts_read = self.stream.count_changes(self._counts_read)
            self.stand_in_cpu_s += time.process_time() - c0
            self.live.set_popularity(changed)
        if "trending" in due:
            c0 = time.process_time()
            head = self.stream.trending(max(self.live.config.recommend.trending_pool, 1))
            self.stand_in_cpu_s += time.process_time() - c0
            self.live.set_trending(head)

    # --- OnlineModel ----------------------------------------------------------------
    def observe(self, event: Any, before: UserState) -> None:
        return None

    def refresh(self, users: Sequence[TouchedUser], now_ms: int) -> dict[str, IntArray]:
        self._now = max(self._now, now_ms)
        if not users:  # the loop only tells the time: sync when next asked
            return {}
        self._sync(now_ms)
        if self.frozen:
            return {}
        return self._compute(users, now_ms)

    def cold_list(self) -> IntArray:
        """The cold-start list, scored when asked and at most once per ``_COLD_EVERY_MS``.

        Built on demand as its own one-user call: the loop asks for it only for a user
        with no list, so most scored events never pay for it. Frozen: the swap's list.
        """
        if not self.frozen and self._now - self._cold_at >= _COLD_EVERY_MS:
            self._sync(self._now)
            self._compute([], self._now)
        return self._cold

    def swap_bundle(self, bundle: Any, now_ms: int) -> dict[str, IntArray]:
        self._now = max(self._now, now_ms)
        self._sync(now_ms, force=True)
        self.live.swap_bundle(bundle)
        self._counts_read = 0  # the new catalog starts from the bundle's counts
        # trending rows index the catalog, which the swap rebuilt
        self._sync(now_ms, force=True)
        if not self.frozen:
            self._cold_at = -(10**18)  # the cold-start list under the new bundle, when asked
            return {}
        users = [TouchedUser(u, 0, s, None, None, now_ms) for u, s in self.stream.states.items()]
        lists = self._compute([], now_ms)
        for start in range(0, len(users), self.chunk):
            lists.update(self._compute(users[start : start + self.chunk], now_ms))
        return lists

    def close(self) -> None:
        return None

    def _compute(self, users: Sequence[TouchedUser], now_ms: int) -> dict[str, IntArray]:
        asked = list(users)
        if not users:  # the cold-start list alone
            self._cold_at = now_ms
            asked.append(TouchedUser(_COLD_USER, 0, UserState(), None, None, now_ms))
        lists = self.live.score(asked, now_ms).lists
        codes = {
            uid: self.stream.codes([it.item_id for it in rec.items[: self.k]])
            for uid, rec in lists.items()
        }
        if _COLD_USER in codes:
            self._cold = codes.pop(_COLD_USER)
        return codes

    def item_vectors(self) -> np.ndarray:
        """Vectors of every item code in the served catalog's space (zeros if unknown)."""
        cat = self.live.catalog
        out = np.zeros((self.stream.n_items, cat.dim), np.float32)
        vecs = cat.vectors()
        for item_id, row in cat.row_of.items():
            c = self.stream.code.get(item_id)
            if c is not None:
                out[c] = vecs[row]
        return out
