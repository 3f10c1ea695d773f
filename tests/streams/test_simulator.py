"""The simulator: repeatable, and carrying the structure it claims to plant."""

from __future__ import annotations

import itertools
import json
from collections import Counter, defaultdict
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from freshet.simulator.faults import fault_kinds, malformed_messages
from freshet.simulator.stream import SimConfig, World, iter_batches, simulate, stream_events
from schemas.codec import decode_catalog, decode_interaction, encode
from schemas.events import CatalogEvent, InteractionEvent

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "json"

CONFIG = SimConfig(
    users=400,
    items=300,
    categories=12,
    events=20_000,
    rate=50.0,
    new_user_rate=2.0,
    new_item_rate=2.0,
    removal_rate=0.5,
)


@pytest.fixture(scope="module")
def world() -> World:
    return World(CONFIG, seed=11)


@pytest.fixture(scope="module")
def events(world: World) -> list[CatalogEvent | InteractionEvent]:
    return list(stream_events(world))


@pytest.fixture(scope="module")
def interactions(events: list[CatalogEvent | InteractionEvent]) -> list[InteractionEvent]:
    return [e for e in events if isinstance(e, InteractionEvent)]


def test_same_seed_same_stream_other_seed_other_stream() -> None:
    config = SimConfig(users=50, items=40, categories=5, events=2_000, new_item_rate=3)
    first = [encode(e) for e in simulate(config, seed=3)]
    assert first == [encode(e) for e in simulate(config, seed=3)]
    assert first != [encode(e) for e in simulate(config, seed=4)]


def test_counts_ids_and_time(world: World, events: list, interactions: list) -> None:
    assert len(interactions) == CONFIG.events
    assert len({e.event_id for e in events}) == len(events)
    ts = [e.ts for e in events]
    assert all(a <= b for a, b in itertools.pairwise(ts))
    assert ts[0] == CONFIG.start_ms
    span_s = (interactions[-1].ts - interactions[0].ts) / 1000
    assert span_s == pytest.approx(CONFIG.events / CONFIG.rate, rel=0.05)
    # The initial catalog comes first, before any interaction.
    assert all(isinstance(e, CatalogEvent) for e in events[: CONFIG.items])


def test_event_mix_is_a_funnel(interactions: list[InteractionEvent]) -> None:
    mix = Counter(e.type for e in interactions)
    assert mix["view"] > mix["click"] > mix["add_to_cart"] > mix["purchase"] > 0
    assert mix["view"] / len(interactions) > 0.5
    assert mix["rating"] > 0
    assert all(1 <= e.value <= 5 for e in interactions if e.type == "rating")  # type: ignore[operator]
    assert all(e.value and e.value > 0 for e in interactions if e.type == "purchase")


def test_every_event_valid_against_json_schema_and_decoder() -> None:
    config = SimConfig(
        users=100, items=80, categories=6, events=4_000, new_user_rate=5, new_item_rate=5,
        removal_rate=1, duplicates=0.02,
    )  # fmt: skip
    events = list(simulate(config, seed=21))
    assert any(isinstance(e, CatalogEvent) and e.op == "remove" for e in events)
    interaction_schema = json.loads((SCHEMAS / "interaction_event.v1.json").read_text())
    catalog_schema = json.loads((SCHEMAS / "catalog_event.v1.json").read_text())
    check_i = jsonschema.Draft202012Validator(interaction_schema)
    check_c = jsonschema.Draft202012Validator(catalog_schema)
    for event in events:
        if isinstance(event, InteractionEvent):
            check_i.validate(event.to_dict())
            assert decode_interaction(encode(event)) == event
        else:
            check_c.validate(event.to_dict())
            assert decode_catalog(encode(event)) == event


def test_popularity_has_a_long_tail(world: World, interactions: list) -> None:
    items = [world.item_index(e.item_id) for e in interactions]
    counts = np.sort(np.bincount(items, minlength=world.n_items))[::-1].astype(float)
    assert counts[: len(counts) // 5].sum() / counts.sum() > 0.6
    assert np.median(counts) < counts.mean() / 2
    # Rank-frequency over the head is a power law with exponent near the planted one.
    head = slice(0, len(counts) // 2)
    ranks = np.arange(1, len(counts) + 1)
    slope = np.polyfit(np.log(ranks[head]), np.log(np.maximum(counts[head], 0.5)), 1)[0]
    assert -1.5 < slope < -0.7


def test_users_concentrate_on_their_taste_categories(world: World, interactions: list) -> None:
    tastes = world.user_tastes
    users = np.array([world.user_index(e.user_id) for e in interactions])
    items = np.array([world.item_index(e.item_id) for e in interactions])
    in_taste = tastes[users, world.item_category[items]] > 0
    chance = float((tastes[users] > 0).sum(axis=1).mean()) / CONFIG.categories
    assert in_taste.mean() > 0.8
    assert in_taste.mean() > 3 * chance


def test_successors_follow_far_above_chance(world: World, interactions: list) -> None:
    last_view: dict[int, int] = {}
    follows = pairs = 0
    for e in interactions:
        if e.type != "view":
            continue
        session = int(e.context["session"])
        item = world.item_index(e.item_id)
        if session in last_view:
            pairs += 1
            follows += item in world.successors[last_view[session]]
        last_view[session] = item
    # A popularity draw lands on one of the 3 successors of the previous item rarely.
    successor_pop = world.item_popularity[world.successors].sum(axis=1).mean()
    assert pairs > 1000
    assert follows / pairs > 0.3
    assert follows / pairs > 5 * successor_pop


def test_ratings_and_clicks_track_taste(world: World, interactions: list) -> None:
    def affinity(kind: str) -> tuple[np.ndarray, np.ndarray]:
        picked = [e for e in interactions if e.type == kind]
        users = np.array([world.user_index(e.user_id) for e in picked])
        items = np.array([world.item_index(e.item_id) for e in picked])
        return world.affinity(users, items), np.array([e.value or 0.0 for e in picked])

    aff, stars = affinity("rating")
    assert np.corrcoef(aff, stars)[0, 1] > 0.5
    assert affinity("click")[0].mean() > affinity("view")[0].mean()


def test_catalog_upsert_precedes_every_interaction_and_removal_ends_them(
    world: World, events: list
) -> None:
    upserted: set[str] = set()
    removed: set[str] = set()
    for e in events:
        if isinstance(e, CatalogEvent):
            (upserted if e.op == "upsert" else removed).add(e.item_id)
        else:
            assert e.item_id in upserted, e
            assert e.item_id not in removed, e
    assert len(upserted) == world.n_items
    assert len(removed) == round(CONFIG.events * CONFIG.removal_rate / 1000)


def test_new_items_get_interactions_from_users_who_like_their_category(
    world: World, interactions: list
) -> None:
    tastes = world.user_tastes
    new = {world.item_ids[i] for i in range(CONFIG.items, world.n_items)}
    hits = [e for e in interactions if e.item_id in new]
    assert len(hits) > 200
    users = np.array([world.user_index(e.user_id) for e in hits])
    items = np.array([world.item_index(e.item_id) for e in hits])
    assert (tastes[users, world.item_category[items]] > 0).mean() > 0.7


def test_new_users_appear_and_item_text_predicts_category(world: World, interactions: list) -> None:
    seen = {e.user_id for e in interactions}
    new_users = world.user_ids[CONFIG.users :]
    assert new_users and all(u in seen for u in new_users)
    # Most tokens of an item's text come from its primary category's words.
    tok = world.item_tokens
    own = world.token_category[tok] == world.item_category[:, None]
    assert own[tok >= 0].mean() > 0.6


def test_batches_match_events(world: World, interactions: list) -> None:
    arrays = list(iter_batches(world))
    assert sum(len(b) for b in arrays) == len(interactions)
    first = next(b for b in arrays if len(b))
    assert world.user_ids[int(first.user[0])] == interactions[0].user_id


def test_duplicates_are_resent_with_the_same_id() -> None:
    config = SimConfig(users=50, items=40, categories=4, events=5_000, duplicates=0.1)
    sent = [e for e in simulate(config, seed=1) if isinstance(e, InteractionEvent)]
    ids = Counter(e.event_id for e in sent)
    assert len(ids) == config.events
    assert 0.07 < (len(sent) - config.events) / config.events < 0.13
    assert max(ids.values()) == 2


def test_malformed_messages_are_refused_with_the_stated_reason() -> None:
    faults = malformed_messages(3 * fault_kinds(), seed=5)
    by_reason: defaultdict[str, int] = defaultdict(int)
    for raw, reason in faults:
        refusal = decode_interaction(raw)
        assert not isinstance(refusal, InteractionEvent), raw[:80]
        assert refusal.reason == reason, (raw[:80], refusal)
        assert b"\n" not in raw
        by_reason[reason] += 1
    assert set(by_reason) >= {
        "invalid_json", "invalid_utf8", "not_an_object", "missing_field", "unknown_field",
        "wrong_type", "invalid_id", "unknown_event_type", "out_of_range",
        "timestamp_out_of_range", "too_large", "oversized",
    }  # fmt: skip
    assert malformed_messages(10, seed=5) == malformed_messages(10, seed=5)
