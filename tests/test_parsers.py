"""One parser each for Redis generation pointers and for command-line times."""

from __future__ import annotations

import pytest
import typer
from hypothesis import given
from hypothesis import strategies as st

from freshet.api.lists import generation_from
from freshet.cli.train import parse_time
from streams.redis_io.generation import parse_generation


@given(st.one_of(st.none(), st.binary(max_size=12), st.from_regex(r"g[0-9]{1,10}", fullmatch=True)))
def test_the_api_reads_a_pointer_exactly_as_the_worker_does(raw: bytes | str | None) -> None:
    try:
        expected: str | None = parse_generation(raw)
    except ValueError:
        expected = None
    assert generation_from(raw) == expected


def test_pointer_known_answers() -> None:
    assert generation_from(None) == "g1" and generation_from(b"g12") == "g12"
    assert generation_from(b"g0") is None and generation_from(b"blue") is None


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("1700000000000", 1_700_000_000_000),
        ("2023-11-14T22:13:20Z", 1_700_000_000_000),
        ("2023-11-14T22:13:20", 1_700_000_000_000),  # no zone: UTC
        ("2023-11-14T23:13:20+01:00", 1_700_000_000_000),
        ("  ", None),
        (None, None),
    ],
)
def test_times_from_the_command_line(text: str | None, ms: int | None) -> None:
    assert parse_time(text) == ms


def test_a_time_that_is_neither_is_refused() -> None:
    with pytest.raises(typer.BadParameter):
        parse_time("last tuesday")
