"""A synthetic shop's event stream, with structure a recommender can learn.

The data source for the demo, benchmarks, training and tests. A ``World`` (see
``freshet.simulator.world``) plants the truth: sparse user tastes, Zipf popularity,
"what follows what" habits, category-specific item text. This module plays it out as
sessions of view → click → add_to_cart → purchase funnels (plus some ratings), with
users and items arriving and items leaving, deterministically from a seed.

Usage::

    for event in simulate(SimConfig(users=1000, items=500, events=100_000), seed=7):
        ...  # CatalogEvent (the initial catalog comes first) or InteractionEvent

    world = World(config, seed=7)          # ground truth: world.user_tastes, ...
    for batch in iter_batches(world):      # the same stream as numpy arrays
        ...

Sessions are generated a chunk at a time, all sessions of a chunk advancing in step
through numpy, so a million events take seconds rather than minutes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from freshet.simulator.config import SimConfig
from freshet.simulator.world import NEVER, CategorySampler, FloatArray, IntArray, World
from schemas.events import EVENT_TYPES, CatalogEvent, InteractionEvent

__all__ = ["SimBatch", "SimConfig", "World", "iter_batches", "simulate", "stream_events"]

CHUNK_EVENTS = 4096
"""Interaction events per chunk; catalog changes take effect at chunk starts."""

_SESSION_SPREAD = 16.0
"""Sort-key distance between two events of a session, in units of chunk events: the
larger, the more sessions interleave in the stream."""

_EVENTS_STREAM = 1
_DUPLICATES_STREAM = 2


@dataclass(frozen=True, slots=True)
class SimBatch:
    """One chunk of the stream: catalog changes first, then interactions in time order.

    Attributes:
        catalog: Catalog events taking effect before this chunk's interactions.
        user: User index of each interaction (``world.user_ids[u]`` is its id).
        item: Item index of each interaction.
        etype: Index into ``schemas.events.EVENT_TYPES``.
        ts: Event time, epoch milliseconds, non-decreasing.
        value: Rating (1-5) or purchase amount; NaN where there is none.
        session: Run-wide session number of each interaction.
        first_event: Run-wide number of the first interaction in this batch.
    """

    catalog: tuple[CatalogEvent, ...]
    user: IntArray
    item: IntArray
    etype: IntArray
    ts: IntArray
    value: FloatArray
    session: IntArray
    first_event: int

    def __len__(self) -> int:
        return int(self.user.size)


def run_id(world: World) -> str:
    """Prefix of this run's event ids: ``config.run_id`` or ``s<seed>``."""
    return world.config.run_id or f"s{world.seed}"


def simulate(config: SimConfig, seed: int = 0) -> Iterator[CatalogEvent | InteractionEvent]:
    """Draw a world from ``seed`` and yield its events: initial catalog first."""
    return stream_events(World(config, seed))


def stream_events(world: World) -> Iterator[CatalogEvent | InteractionEvent]:
    """The events of ``world`` as contract records, with duplicates if configured.

    An injected duplicate is the very same event (same ``event_id``) sent again right
    after the original, as a producer retry would.
    """
    run = run_id(world)
    dup_rng = world.rng(_DUPLICATES_STREAM)
    dup_fraction = world.config.duplicates
    devices = [world.devices[d] for d in world.user_device.tolist()]
    user_ids, item_ids = world.user_ids, world.item_ids
    for batch in iter_batches(world):
        yield from batch.catalog
        users = batch.user.tolist()
        items = batch.item.tolist()
        types = [EVENT_TYPES[t] for t in batch.etype.tolist()]
        values = [None if v != v else v for v in batch.value.tolist()]
        dup = (dup_rng.random(len(batch)) < dup_fraction).tolist() if dup_fraction > 0 else None
        for j, (u, i, t, ts, v, s) in enumerate(
            zip(users, items, types, batch.ts.tolist(), values, batch.session.tolist(), strict=True)
        ):
            event = InteractionEvent(
                f"{run}-{batch.first_event + j}",
                user_ids[u],
                item_ids[i],
                t,
                ts,
                v,
                {"device": devices[u], "session": s},
            )
            yield event
            if dup is not None and dup[j]:
                yield event


def iter_batches(world: World) -> Iterator[SimBatch]:
    """The stream of ``world`` chunk by chunk, as arrays (no per-event objects)."""
    cfg = world.config
    rng = world.rng(_EVENTS_STREAM)
    run = run_id(world)
    start, step_ms = cfg.start_ms, 1000.0 / cfg.rate
    catalog_no = 0

    def upsert(item: int, ts: int) -> CatalogEvent:
        nonlocal catalog_no
        catalog_no += 1
        return world.catalog_upsert(item, f"{run}-c{catalog_no - 1}", ts)

    def remove(item: int, ts: int) -> CatalogEvent:
        nonlocal catalog_no
        catalog_no += 1
        return world.catalog_remove(item, f"{run}-c{catalog_no - 1}", ts)

    live = np.zeros(world.n_items, dtype=bool)
    live[: cfg.items] = True
    pending: list[CatalogEvent] = [upsert(i, start) for i in range(cfg.items)]
    removals = np.argsort(world.item_removal, kind="stable")
    removals = removals[world.item_removal[removals] != NEVER]
    next_item, next_removal, next_user = cfg.items, 0, cfg.users
    sampler = _sampler(world, live)

    clock = 0.0  # ms since start of the last interaction emitted
    emitted = sessions_done = generated = 0
    per_session = _expected_events_per_session(cfg)
    while emitted < cfg.events:
        target = min(CHUNK_EVENTS, cfg.events - emitted)
        horizon = emitted + target
        now = start + int(clock)
        changed = False
        while next_item < world.n_items and world.item_arrival[next_item] < horizon:
            pending.append(upsert(next_item, now))
            live[next_item] = changed = True
            next_item += 1
        while next_removal < removals.size and world.item_removal[removals[next_removal]] < horizon:
            gone = int(removals[next_removal])
            pending.append(remove(gone, now))
            live[gone] = False
            changed = True
            next_removal += 1
        if changed:
            sampler = _sampler(world, live)
        first_user = next_user
        while next_user < world.n_users and world.user_arrival[next_user] < horizon:
            next_user += 1

        # Every arriving user starts a session; the rest go to users by activity.
        n_sessions = max(1, math.ceil(target / per_session))
        arriving = np.arange(first_user, next_user)
        cum_activity = np.cumsum(world.user_activity[:next_user])
        drawn = np.searchsorted(
            cum_activity, rng.random(max(n_sessions - arriving.size, 0)) * cum_activity[-1]
        )
        users = np.concatenate([arriving, np.minimum(drawn, next_user - 1)])
        user, item, etype, value, session = _sessions(world, sampler, live, rng, users)
        session += sessions_done
        sessions_done += users.size
        generated += user.size
        per_session = max(generated / sessions_done, 1.0)

        n = min(user.size, target)
        times = clock + np.cumsum(rng.exponential(step_ms, size=n))
        clock = float(times[-1]) if n else clock
        yield SimBatch(
            catalog=tuple(pending),
            user=user[:n],
            item=item[:n],
            etype=etype[:n],
            ts=start + times.astype(np.int64),
            value=value[:n],
            session=session[:n],
            first_event=emitted,
        )
        pending = []
        emitted += n

    # Arrivals and removals that fell after the last chunk's horizon still happen.
    now = start + int(clock)
    pending.extend(upsert(i, now) for i in range(next_item, world.n_items))
    pending.extend(remove(int(i), now) for i in removals[next_removal:])
    if pending:
        empty = np.zeros(0, dtype=np.int64)
        yield SimBatch(tuple(pending), empty, empty, empty, empty, np.zeros(0), empty, emitted)


def _sampler(world: World, live: np.ndarray) -> CategorySampler:
    return CategorySampler.build(
        world.item_category, world.item_secondary, world.item_popularity,
        world.config.categories, live,
    )  # fmt: skip


def _expected_events_per_session(cfg: SimConfig) -> float:
    click = cfg.click_prob + 0.5 * cfg.click_taste_gain
    per_visit = 1 + click * (1 + cfg.cart_prob * (1 + cfg.purchase_prob)) + cfg.rating_prob
    return cfg.mean_session_items * per_visit


def _fresh_items(
    world: World, sampler: CategorySampler, rng: np.random.Generator, users: IntArray
) -> IntArray:
    """Items drawn by taste × popularity: a category from the user's taste, then an item."""
    cats = world.user_taste_cats[users]
    cum = np.cumsum(world.user_taste_weights[users], axis=1)
    pick = (cum < rng.random(users.size)[:, None]).sum(axis=1)
    cat = cats[np.arange(users.size), np.minimum(pick, cats.shape[1] - 1)]
    cat = np.where(cat < 0, cats[:, 0], cat)  # rounding at the top of the cumulative sum
    explore = rng.random(users.size) < world.config.explore_prob
    if explore.any():
        cat[explore] = rng.choice(world.config.categories, explore.sum(), p=world.category_weight)
    return sampler.sample(rng, cat)


def _sessions(
    world: World,
    sampler: CategorySampler,
    live: np.ndarray,
    rng: np.random.Generator,
    users: IntArray,
) -> tuple[IntArray, IntArray, IntArray, FloatArray, IntArray]:
    """Play one session per user; returns events as arrays, sessions interleaved in time."""
    cfg = world.config
    n = users.size
    lengths = np.minimum(
        rng.geometric(1.0 / cfg.mean_session_items, n), int(10 * cfg.mean_session_items)
    )
    visits = np.full((n, int(lengths.max())), -1, dtype=np.int64)
    visits[:, 0] = _fresh_items(world, sampler, rng, users)
    for step in range(1, visits.shape[1]):
        rows = np.flatnonzero(lengths > step)
        prev = visits[rows, step - 1]
        succ = world.successors[prev, rng.integers(0, cfg.successors, rows.size)]
        follow = (rng.random(rows.size) < cfg.successor_prob) & live[succ]
        fresh = ~follow
        nxt = succ.copy()
        nxt[fresh] = _fresh_items(world, sampler, rng, users[rows[fresh]])
        visits[rows, step] = nxt

    v_session, v_step = np.nonzero(visits >= 0)  # session-major, steps in order
    v_user = users[v_session]
    v_item = visits[v_session, v_step]
    affinity = world.affinity(v_user, v_item)
    r = rng.random((v_item.size, 4))
    click = r[:, 0] < cfg.click_prob + cfg.click_taste_gain * affinity
    cart = click & (r[:, 1] < cfg.cart_prob)
    buy = cart & (r[:, 2] < cfg.purchase_prob)
    rate = r[:, 3] < cfg.rating_prob
    funnel = np.column_stack([np.ones_like(click), click, cart, buy, rate])
    visit, etype = np.nonzero(funnel)  # per visit: view, click, cart, purchase, rating
    session = v_session[visit]

    value = np.full(visit.size, np.nan)
    is_buy = etype == 3
    value[is_buy] = world.item_price[v_item[visit[is_buy]]]
    is_rating = etype == 4
    stars = 1.5 + 3.5 * affinity[visit[is_rating]] + rng.normal(0.0, 0.6, is_rating.sum())
    value[is_rating] = np.clip(np.rint(stars), 1, 5)

    # Interleave sessions: each starts at a random point, its events spaced evenly.
    total = visit.size
    position = np.arange(total) - np.searchsorted(session, session, side="left")
    key = rng.random(n)[session] * total + position * _SESSION_SPREAD
    order = np.argsort(key, kind="stable")
    return (
        v_user[visit][order],
        v_item[visit][order],
        etype[order].astype(np.int64),
        value[order],
        session[order].astype(np.int64),
    )
