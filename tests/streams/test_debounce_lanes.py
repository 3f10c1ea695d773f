"""The adaptive debounce with the batch agent's lanes side by side (review finding 5).

Each lane's batches are compared with that lane's own last batch, and a window opened
in one lane holds only its users: a caught-up lane's batches, interleaved with a
lagging lane's, neither break that lane's run of late batches nor release its users.
"""

from __future__ import annotations

from pathlib import Path

from .test_trailing_edges import T0, shell, touched


async def test_a_lagging_lane_opens_its_window_between_a_caught_up_lane_s_batches(
    tmp_path: Path,
) -> None:
    live = shell(
        tmp_path, debounce_mode="adaptive", debounce_ms=200, debounce_behind_ms=50, batch_lanes=2
    )
    # Partition 0 is lane 0 (behind by 120 ms), partition 1 lane 1 (caught up).
    first = await live.refresh([touched("u0", 0, T0, waited_ms=120)], T0)
    assert set(first.lists) == {"u0"}  # lane 0's first late batch: a hiccup, no window
    other = await live.refresh([touched("u1", 1, T0 + 5)], T0 + 5)
    assert set(other.lists) == {"u1"}
    behind = await live.refresh([touched("u0", 0, T0 + 10, waited_ms=120)], T0 + 10)
    assert not behind.lists and set(live.debounce.pending) == {"u0"}  # late twice: a window
    other = await live.refresh([touched("u2", 1, T0 + 15)], T0 + 15)
    assert set(other.lists) == {"u2"}  # lane 1's batch leaves lane 0's user pending
    assert set(live.debounce.pending) == {"u0"}
    caught_up = await live.refresh([touched("u3", 0, T0 + 20)], T0 + 20)
    assert set(caught_up.lists) == {"u3", "u0"} and caught_up.partitions == {"u0": 0}
    assert not live.debounce.pending


async def test_one_lane_keeps_the_single_run_of_batches(tmp_path: Path) -> None:
    """With one lane (the default) every partition's batch counts in the same run."""
    live = shell(tmp_path, debounce_mode="adaptive", debounce_ms=200, debounce_behind_ms=50)
    await live.refresh([touched("u0", 0, T0, waited_ms=120)], T0)
    behind = await live.refresh([touched("u0", 1, T0 + 10, waited_ms=120)], T0 + 10)
    assert not behind.lists and set(live.debounce.pending) == {"u0"}
