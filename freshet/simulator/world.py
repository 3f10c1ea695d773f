"""The planted structure behind the simulator: items, users, tastes and habits.

A ``World`` is drawn once from a seed and holds the ground truth that tests and
benchmarks check models against: each user's sparse taste over categories, each item's
categories, text and popularity, and each item's few "next" items. ``freshet.simulator.stream``
turns a world into a stream of events; this module does no I/O and emits nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from freshet.simulator.config import SimConfig
from schemas.events import CatalogEvent

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

NEVER = np.iinfo(np.int64).max
"""Position of an event that never happens (an item that is never removed)."""

_CATEGORY_NAMES = (
    "books", "electronics", "home", "garden", "toys", "fashion", "shoes", "beauty",
    "sports", "outdoor", "grocery", "pets", "music", "movies", "games", "automotive",
    "office", "baby", "health", "jewelry", "tools", "kitchen", "travel", "crafts",
)  # fmt: skip
_GENERIC_WORDS = (
    "new", "classic", "pro", "mini", "max", "plus", "lite", "smart", "eco", "deluxe",
    "basic", "ultra", "compact", "premium", "original", "edition", "set", "pack",
    "series", "essential",
)  # fmt: skip
_PRICE_BANDS = ("budget", "mid", "premium", "luxury")
_DEVICES = ("mobile", "desktop", "tablet")
_SYLLABLES_ONSET = tuple("bcdfghjklmnprstvz")
_SYLLABLES_VOWEL = ("a", "e", "i", "o", "u", "ai", "ou", "ee")


class World:
    """Ground truth of one simulated shop, drawn from ``seed``.

    Users and items that arrive during the run are drawn up front too, with the
    position (count of interaction events before it) at which they appear; indices
    ``0..config.users-1`` and ``0..config.items-1`` are the initial ones.

    Attributes:
        config: The configuration it was drawn from.
        seed: The seed it was drawn from.
        category_names: Name of each category index.
        category_weight: Share of each category in the catalog (sums to 1).
        related: ``(C, 2)`` two related categories per category.
        item_category: Primary category of each item.
        item_secondary: Secondary category of each item, ``-1`` when none.
        item_popularity: Base popularity weight of each item (Zipf by random rank).
        item_brand: Brand name index of each item (into ``brands``).
        item_price: Price of each item.
        item_tokens: ``(I, T)`` token indices of each item's text, ``-1`` padding.
        successors: ``(I, k)`` the items that tend to follow each item.
        item_arrival: Position at which each item enters the catalog (0: initial).
        item_removal: Position at which each item is removed, ``NEVER`` if kept.
        user_taste_cats: ``(U, K)`` the categories each user likes, ``-1`` padding.
        user_taste_weights: ``(U, K)`` how much, summing to 1 per user.
        user_activity: Heavy-tailed weight of how often each user starts a session.
        user_device: Device index of each user (into ``devices``).
        user_arrival: Position at which each user first appears (0: initial).
        vocab: Every text token; ``token_category[t]`` is its category, ``-1`` generic.
    """

    devices = _DEVICES
    price_bands = _PRICE_BANDS

    def __init__(self, config: SimConfig, seed: int = 0) -> None:
        self.config = config
        self.seed = seed
        rng = self.rng(0)
        cfg = config
        c = cfg.categories

        self.category_names = tuple(
            _CATEGORY_NAMES[i] if c <= len(_CATEGORY_NAMES) else f"cat-{i:03d}" for i in range(c)
        )
        # Categories differ in size, mildly: a flat Zipf over a random order.
        cat_rank = rng.permutation(c) + 1
        cat_w = 1.0 / cat_rank**0.5
        self.category_weight: FloatArray = cat_w / cat_w.sum()
        self.related: IntArray = _related_categories(rng, c)

        n_new_items = round(cfg.events * cfg.new_item_rate / 1000)
        n_new_users = round(cfg.events * cfg.new_user_rate / 1000)
        n_items = cfg.items + n_new_items
        n_users = cfg.users + n_new_users
        self._draw_items(rng, n_items, n_new_items)
        self._draw_text(rng, n_items)
        self._draw_successors(rng, n_items)
        self._draw_users(rng, n_users, n_new_users)

        self.user_ids = [f"u{u}" for u in range(n_users)]
        self.item_ids = [f"i{i}" for i in range(n_items)]

    # --- drawing -----------------------------------------------------------------------

    def _draw_items(self, rng: np.random.Generator, n_items: int, n_new: int) -> None:
        cfg = self.config
        c = cfg.categories
        self.item_category: IntArray = rng.choice(c, size=n_items, p=self.category_weight)
        has_second = (rng.random(n_items) < cfg.secondary_prob) & (c > 1)
        pick = rng.integers(0, 2, size=n_items)
        second = self.related[self.item_category, pick]
        self.item_secondary: IntArray = np.where(has_second, second, -1)

        ranks = rng.permutation(n_items) + 1
        pop = 1.0 / ranks.astype(np.float64) ** cfg.zipf_exponent
        pop[cfg.items :] *= cfg.new_item_boost
        self.item_popularity: FloatArray = pop / pop.sum()

        self.brands = tuple(f"{name}-{b}" for name in self.category_names for b in range(6))
        brand_in_cat = np.minimum(rng.zipf(1.6, size=n_items) - 1, 5)
        self.item_brand: IntArray = self.item_category * 6 + brand_in_cat
        # Each category has its own price level; items scatter around it.
        cat_price = np.exp(rng.uniform(np.log(5.0), np.log(500.0), size=c))
        self.item_price: FloatArray = np.round(
            cat_price[self.item_category] * rng.lognormal(0.0, 0.5, size=n_items), 2
        )

        arrival = np.zeros(n_items, dtype=np.int64)
        arrival[cfg.items :] = np.sort(rng.integers(0, max(cfg.events, 1), size=n_new))
        self.item_arrival: IntArray = arrival
        n_removed = min(round(cfg.events * cfg.removal_rate / 1000), cfg.items // 2)
        removal = np.full(n_items, NEVER, dtype=np.int64)
        gone = rng.choice(cfg.items, size=n_removed, replace=False)
        removal[gone] = rng.integers(1, max(cfg.events, 2), size=n_removed)
        self.item_removal: IntArray = removal

    def _draw_text(self, rng: np.random.Generator, n_items: int) -> None:
        c = self.config.categories
        per_cat = 24
        words = _pseudo_words(rng, c * per_cat)
        self.vocab: tuple[str, ...] = (*words, *_GENERIC_WORDS)
        self.token_category: IntArray = np.concatenate(
            [np.repeat(np.arange(c), per_cat), np.full(len(_GENERIC_WORDS), -1)]
        )
        # Titles of 3-7 tokens: mostly from the primary category's words, some from
        # the secondary's, some generic, so text predicts category but not perfectly.
        width = 7
        length = rng.integers(3, width + 1, size=n_items)
        source = rng.random((n_items, width))
        own = self.item_category[:, None] * per_cat + rng.integers(0, per_cat, (n_items, width))
        sec_cat = np.where(self.item_secondary >= 0, self.item_secondary, self.item_category)
        sec = sec_cat[:, None] * per_cat + rng.integers(0, per_cat, (n_items, width))
        gen = c * per_cat + rng.integers(0, len(_GENERIC_WORDS), (n_items, width))
        tokens = np.where(source < 0.7, own, np.where(source < 0.85, sec, gen))
        tokens[np.arange(width)[None, :] >= length[:, None]] = -1
        self.item_tokens: IntArray = tokens

    def _draw_successors(self, rng: np.random.Generator, n_items: int) -> None:
        """Each item's next items: most from its own category, one from a related one."""
        k = self.config.successors
        targets = np.repeat(self.item_category[:, None], k, axis=1)
        if k > 1:
            pick = rng.integers(0, 2, size=n_items)
            targets[:, -1] = self.related[self.item_category, pick]
        sampler = CategorySampler.build(
            self.item_category, self.item_secondary, self.item_popularity, self.config.categories,
            np.ones(n_items, dtype=bool), secondary_weight=0.0,
        )  # fmt: skip
        succ = sampler.sample(rng, targets.ravel()).reshape(n_items, k)
        me = np.arange(n_items)[:, None]
        for _ in range(3):  # redraw the few that picked the item itself
            bad = succ == me
            if not bad.any():
                break
            succ[bad] = sampler.sample(rng, targets[bad])
        self.successors: IntArray = succ

    def _draw_users(self, rng: np.random.Generator, n_users: int, n_new: int) -> None:
        cfg = self.config
        k = min(cfg.max_tastes, cfg.categories)
        n_tastes = np.minimum(1 + rng.poisson(1.0, size=n_users), k)
        # Users prefer popular categories; Gumbel-top-k draws k distinct ones per user.
        gumbel = rng.gumbel(size=(n_users, cfg.categories)) + np.log(self.category_weight)
        order = np.argsort(-gumbel, axis=1)[:, :k]
        weights = rng.dirichlet(np.ones(k), size=n_users)
        mask = np.arange(k)[None, :] < n_tastes[:, None]
        weights = np.where(mask, weights, 0.0)
        weights /= weights.sum(axis=1, keepdims=True)
        self.user_taste_cats: IntArray = np.where(mask, order, -1)
        self.user_taste_weights: FloatArray = weights
        self.user_activity: FloatArray = rng.pareto(1.5, size=n_users) + 1.0
        self.user_device: IntArray = rng.choice(len(_DEVICES), size=n_users, p=[0.6, 0.3, 0.1])
        arrival = np.zeros(n_users, dtype=np.int64)
        arrival[cfg.users :] = np.sort(rng.integers(0, max(cfg.events, 1), size=n_new))
        self.user_arrival: IntArray = arrival

    def rng(self, stream: int) -> np.random.Generator:
        """A fresh generator for one independent use of this world's seed.

        Stream 0 draws the world; ``freshet.simulator.stream`` uses 1 (events) and 2 (faults).
        """
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(stream,)))

    # --- ground truth ------------------------------------------------------------------

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def user_tastes(self) -> FloatArray:
        """Dense ``(U, C)`` taste matrix; each row sums to 1 over a few categories."""
        dense = np.zeros((self.n_users, self.config.categories))
        rows = np.repeat(np.arange(self.n_users), self.user_taste_cats.shape[1])
        cats = self.user_taste_cats.ravel()
        keep = cats >= 0
        np.add.at(dense, (rows[keep], cats[keep]), self.user_taste_weights.ravel()[keep])
        return dense

    def affinity(self, users: IntArray, items: IntArray) -> FloatArray:
        """How much each user likes each item's category, in [0, 1] (1: favourite)."""
        cats = self.user_taste_cats[users]
        w = self.user_taste_weights[users]
        top = w.max(axis=1)
        primary = (w * (cats == self.item_category[items][:, None])).sum(axis=1)
        second = (w * (cats == self.item_secondary[items][:, None])).sum(axis=1)
        return np.minimum((primary + 0.5 * second) / top, 1.0)

    def user_index(self, user_id: str) -> int:
        """Index of a simulated user id (``u<index>``)."""
        return int(user_id[1:])

    def item_index(self, item_id: str) -> int:
        """Index of a simulated item id (``i<index>``)."""
        return int(item_id[1:])

    def item_text(self, item: int) -> str:
        tokens = self.item_tokens[item]
        return " ".join(self.vocab[t] for t in tokens[tokens >= 0])

    def item_categories(self, item: int) -> tuple[str, ...]:
        """Primary category first, then the secondary one if any."""
        names = [self.category_names[self.item_category[item]]]
        if self.item_secondary[item] >= 0:
            names.append(self.category_names[self.item_secondary[item]])
        return tuple(names)

    def catalog_upsert(self, item: int, event_id: str, ts: int) -> CatalogEvent:
        """The catalog message that announces one item."""
        price = float(self.item_price[item])
        band = _PRICE_BANDS[int(np.searchsorted([20.0, 80.0, 300.0], price))]
        return CatalogEvent(
            event_id=event_id,
            op="upsert",
            item_id=self.item_ids[item],
            ts=ts,
            categories=self.item_categories(item),
            attributes={
                "brand": self.brands[self.item_brand[item]],
                "price_band": band,
                "price": price,
            },
            text=self.item_text(item),
        )

    def catalog_remove(self, item: int, event_id: str, ts: int) -> CatalogEvent:
        return CatalogEvent(event_id=event_id, op="remove", item_id=self.item_ids[item], ts=ts)


@dataclass(frozen=True, slots=True)
class CategorySampler:
    """Draws items of given categories in proportion to popularity, batch-wise.

    Members of all categories sit in one array sorted by category with a running
    popularity sum, so one ``searchsorted`` serves a whole batch of categories.
    """

    members: IntArray
    cumulative: FloatArray
    low: FloatArray
    high: FloatArray
    fallback: IntArray

    @classmethod
    def build(
        cls,
        category: IntArray,
        secondary: IntArray,
        popularity: FloatArray,
        n_categories: int,
        live: npt.NDArray[np.bool_],
        secondary_weight: float = 0.5,
    ) -> CategorySampler:
        idx = np.flatnonzero(live)
        cats = [category[idx]]
        items = [idx]
        weights = [popularity[idx]]
        if secondary_weight > 0:
            sec = idx[secondary[idx] >= 0]
            cats.append(secondary[sec])
            items.append(sec)
            weights.append(popularity[sec] * secondary_weight)
        cat = np.concatenate(cats)
        order = np.argsort(cat, kind="stable")
        members = np.concatenate(items)[order]
        cumulative = np.cumsum(np.concatenate(weights)[order])
        bounds = np.searchsorted(cat[order], np.arange(n_categories + 1))
        padded = np.concatenate([[0.0], cumulative])
        low, high = padded[bounds[:-1]], padded[bounds[1:]]
        # An empty category borrows from the nearest non-empty one, so draws never fail.
        filled = np.flatnonzero(high > low)
        if filled.size == 0:
            raise ValueError("no live items to draw from")
        near = filled[np.minimum(np.searchsorted(filled, np.arange(n_categories)), filled.size - 1)]
        return cls(members, cumulative, low, high, near)

    def sample(self, rng: np.random.Generator, categories: IntArray) -> IntArray:
        cats = self.fallback[categories]
        lo, hi = self.low[cats], self.high[cats]
        r = lo + rng.random(cats.shape) * (hi - lo)
        pos = np.searchsorted(self.cumulative, r, side="right")
        return self.members[np.minimum(pos, self.members.size - 1)]


def _related_categories(rng: np.random.Generator, c: int) -> IntArray:
    """Two other categories per category (itself only when there is no other)."""
    if c == 1:
        return np.zeros((1, 2), dtype=np.int64)
    shift = rng.integers(1, c, size=(c, 2))
    return (np.arange(c)[:, None] + shift) % c


def _pseudo_words(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct pronounceable made-up words."""
    out: list[str] = []
    seen: set[str] = set(_GENERIC_WORDS)
    while len(out) < n:
        syll = rng.integers(2, 4)
        word = "".join(
            _SYLLABLES_ONSET[rng.integers(len(_SYLLABLES_ONSET))]
            + _SYLLABLES_VOWEL[rng.integers(len(_SYLLABLES_VOWEL))]
            for _ in range(syll)
        )
        if word not in seen:
            seen.add(word)
            out.append(word)
    return out
