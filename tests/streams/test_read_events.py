"""One reader for every layout: the same ratings written five ways read back the same."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schemas.events import CatalogEvent, InteractionEvent
from streams.core.file_reader import item_file_of, layout_of, read_events

RATINGS = [
    ("1", "31", 2.5, 1260759144),
    ("1", "1029", 3.0, 1260759179),
    ("7", "31", 5.0, 851866703),
]


def _facts(path: Path, **kw: object) -> list[tuple[str, str, float | None, int]]:
    events = [e for e in read_events(path, items="", **kw) if isinstance(e, InteractionEvent)]  # type: ignore[arg-type]
    return [(e.user_id, e.item_id, e.value, e.ts) for e in events]


EXPECTED = [(u, i, v, ts * 1000) for u, i, v, ts in RATINGS]


def test_movielens_csv_dat_tsv_and_jsonl_read_the_same(tmp_path: Path) -> None:
    csv = tmp_path / "ratings.csv"
    csv.write_text(
        "userId,movieId,rating,timestamp\n"
        + "".join(f"{u},{i},{v},{t}\n" for u, i, v, t in RATINGS)
    )
    dat = tmp_path / "ratings.dat"
    dat.write_text("".join(f"{u}::{i}::{v:g}::{t}\n" for u, i, v, t in RATINGS))
    tsv = tmp_path / "plain.tsv"
    tsv.write_text("".join(f"{t}\t{u}\t{i}\t{v}\n" for u, i, v, t in RATINGS))
    with_header = tmp_path / "plain.txt"
    with_header.write_text(
        "ts;who;what;stars\n" + "".join(f"{t};{u};{i};{v}\n" for u, i, v, t in RATINGS)
    )
    jsonl = tmp_path / "events.jsonl"
    jsonl.write_text(
        "".join(
            json.dumps(
                {
                    "event_id": f"e{n}",
                    "user_id": u,
                    "item_id": i,
                    "type": "rating",
                    "value": v,
                    "ts": t * 1000,
                }
            )
            + "\n"
            for n, (u, i, v, t) in enumerate(RATINGS)
        )
    )
    assert _facts(csv) == EXPECTED
    assert _facts(dat) == EXPECTED
    headerless = layout_of(
        columns="timestamp=0,user=1,item=2,rating=3", delimiter="\t", header=False
    )
    assert _facts(tsv, layout=headerless) == EXPECTED
    named = layout_of(columns="timestamp=ts,user=who,item=what,rating=stars", delimiter=";")
    assert _facts(with_header, layout=named) == EXPECTED
    assert _facts(jsonl) == EXPECTED


def test_movies_side_file_becomes_catalog_upserts_first(tmp_path: Path) -> None:
    ratings = tmp_path / "ratings.csv"
    ratings.write_text("userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n")
    (tmp_path / "movies.csv").write_text(
        'movieId,title,genres\n31,"Dangerous Minds, The (1995)",Drama\n'
        "1029,Dumbo (1941),Animation|Children|Drama|Musical\n"
        "99,Nothing (2000),(no genres listed)\n"
    )
    assert item_file_of(ratings) == tmp_path / "movies.csv"
    refused: dict[str, int] = {}
    events = list(read_events(ratings, refused))
    assert refused == {}
    cat = [e for e in events if isinstance(e, CatalogEvent)]
    assert [(c.item_id, c.text, c.categories) for c in cat] == [
        ("31", "Dangerous Minds, The (1995)", ("Drama",)),
        ("1029", "Dumbo (1941)", ("Animation", "Children", "Drama", "Musical")),
        ("99", "Nothing (2000)", ()),
    ]
    assert all(c.ts < events[-1].ts for c in cat)  # upserts sort before every rating
    assert isinstance(events[-1], InteractionEvent)
    assert len([e for e in read_events(ratings, items="")]) == 1  # "" turns the side file off


def test_movies_dat_is_latin1_and_double_colon(tmp_path: Path) -> None:
    ratings = tmp_path / "ratings.dat"
    ratings.write_text("1::5::4::978300760\n")
    (tmp_path / "movies.dat").write_bytes("5::Caf\xe9 (1999)::Comedy|Drama\n".encode("latin-1"))
    cat = [e for e in read_events(ratings) if isinstance(e, CatalogEvent)]
    assert [(c.item_id, c.text, c.categories) for c in cat] == [
        ("5", "Café (1999)", ("Comedy", "Drama"))
    ]


def test_layout_of_refuses_an_unknown_preset_and_prefers_columns() -> None:
    with pytest.raises(ValueError, match="unknown preset"):
        layout_of("nope")
    assert layout_of() is None
    layout = layout_of("movielens", "user=0,item=1,timestamp=2", header=False)
    assert layout is not None and layout.delimiter == ","
