"""The knobs of a simulated shop: its size, its stream and the habits it plants."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Size, pace and habits of a simulated shop.

    Attributes:
        users: Users present at the start.
        items: Items in the initial catalog.
        categories: Number of item categories.
        events: Interaction events to generate (catalog events and injected
            duplicates come on top).
        rate: Mean interaction events per second of event time (Poisson arrivals).
        start_ms: Event time of the first message, epoch milliseconds.
        new_user_rate: New users arriving per 1,000 interaction events.
        new_item_rate: New items arriving per 1,000 interaction events.
        removal_rate: Items removed from the catalog per 1,000 interaction events.
        zipf_exponent: Exponent of the items' rank-popularity law.
        successors: "Next" items per item (sequential habits).
        successor_prob: Chance that the next item of a session is a successor of the
            previous one rather than a fresh taste-and-popularity draw.
        max_tastes: Most categories a user likes.
        explore_prob: Chance that a fresh draw ignores the user's taste.
        mean_session_items: Mean items looked at per session (geometric).
        click_prob: Chance of a click after a view, at zero taste affinity.
        click_taste_gain: Extra click chance at full affinity.
        cart_prob: Chance of add-to-cart after a click.
        purchase_prob: Chance of purchase after add-to-cart.
        rating_prob: Chance that a visit ends with a 1-5 rating.
        secondary_prob: Share of items with a secondary category.
        new_item_boost: Popularity multiplier of items added during the run.
        duplicates: Fraction of interaction events sent twice (fault injection).
        run_id: Prefix of event ids; ``s<seed>`` when empty.
    """

    users: int = 1_000
    items: int = 500
    categories: int = 20
    events: int = 100_000
    rate: float = 100.0
    start_ms: int = 1_704_067_200_000  # 2024-01-01T00:00:00Z
    new_user_rate: float = 0.0
    new_item_rate: float = 0.0
    removal_rate: float = 0.0
    zipf_exponent: float = 1.1
    successors: int = 3
    successor_prob: float = 0.4
    max_tastes: int = 4
    explore_prob: float = 0.05
    mean_session_items: float = 4.0
    click_prob: float = 0.1
    click_taste_gain: float = 0.35
    cart_prob: float = 0.3
    purchase_prob: float = 0.5
    rating_prob: float = 0.05
    secondary_prob: float = 0.3
    new_item_boost: float = 2.0
    duplicates: float = 0.0
    run_id: str = ""

    def __post_init__(self) -> None:
        if self.users < 1 or self.items < 2 or self.categories < 1 or self.events < 0:
            raise ValueError("need users >= 1, items >= 2, categories >= 1, events >= 0")
        if self.rate <= 0:
            raise ValueError("rate (events per second of event time) must be positive")
        if min(self.new_user_rate, self.new_item_rate, self.removal_rate) < 0:
            raise ValueError("arrival and removal rates must be >= 0")
        probs = (
            self.successor_prob, self.explore_prob, self.click_prob, self.cart_prob,
            self.purchase_prob, self.rating_prob, self.secondary_prob, self.duplicates,
        )  # fmt: skip
        if not all(0.0 <= p <= 1.0 for p in probs) or self.click_prob + self.click_taste_gain > 1:
            raise ValueError("probabilities must lie in [0, 1]")
        if self.successors < 1 or self.max_tastes < 1 or self.mean_session_items < 1:
            raise ValueError("successors, max_tastes and mean_session_items must be >= 1")
