"""File readers: known answers for each layout, and every bad row reported by line."""

from __future__ import annotations

from pathlib import Path

import pytest

from freshet.simulator.faults import malformed_messages
from freshet.simulator.stream import SimConfig, simulate
from schemas.codec import Refusal, encode
from schemas.events import CatalogEvent, InteractionEvent
from streams.core.file_reader import (
    PRESETS,
    CsvLayout,
    parse_columns,
    read_csv,
    read_file,
    read_jsonl,
)


def _lines(text: str) -> list[bytes]:
    return text.encode().splitlines(keepends=True)


def test_movielens_dat_known_answer(tmp_path: Path) -> None:
    path = tmp_path / "ratings.dat"
    path.write_bytes(b"1::1193::5::978300760\n1::661::3::978302109\n\n2::3068::4::978299000\n")
    got = list(read_file(path))
    assert got == [
        (1, InteractionEvent("ratings-1", "1", "1193", "rating", 978_300_760_000, 5.0)),
        (2, InteractionEvent("ratings-2", "1", "661", "rating", 978_302_109_000, 3.0)),
        (4, InteractionEvent("ratings-4", "2", "3068", "rating", 978_299_000_000, 4.0)),
    ]


def test_ml_csv_known_answer_with_bad_rows_reported_by_line() -> None:
    text = (
        "userId,movieId,rating,timestamp\n"
        "1,31,2.5,1260759144\n"
        "1,1029,three,1260759179\n"  # rating not a number
        "2,10,4.0\n"  # too few columns
        "2,17,5.0,yesterday\n"  # bad timestamp
        "u:2,17,5.0,1260759200\n"  # key-injection id
        "3,60,3.0,100\n"  # 1970: before the accepted range
        "3,110,4.0,1260759300\n"
    )
    got = list(read_csv(_lines(text), PRESETS["ml-csv"], id_prefix="ratings"))
    assert got[0] == (2, InteractionEvent("ratings-2", "1", "31", "rating", 1_260_759_144_000, 2.5))
    assert got[-1] == (
        8,
        InteractionEvent("ratings-8", "3", "110", "rating", 1_260_759_300_000, 4.0),
    )
    refused = {line: r.reason for line, r in got if isinstance(r, Refusal)}
    assert refused == {
        3: "wrong_type",
        4: "missing_field",
        5: "wrong_type",
        6: "invalid_id",
        7: "timestamp_out_of_range",
    }


def test_generic_columns_with_type_ms_and_other_delimiter() -> None:
    layout = parse_columns(
        "user=who,item=what,timestamp=when,type=kind,value=amount,event_id=id",
        delimiter=";",
        ts_unit="ms",
    )
    text = (
        "id;when;who;what;kind;amount\n"
        "e1;1700000000123;alice;sku-9;purchase;19.99\n"
        "e2;1700000000200;alice;sku-9;view;\n"
        "e3;1700000000300;bob;sku-1;like;\n"
    )
    got = list(read_csv(_lines(text), layout))
    assert got[:2] == [
        (2, InteractionEvent("e1", "alice", "sku-9", "purchase", 1_700_000_000_123, 19.99)),
        (3, InteractionEvent("e2", "alice", "sku-9", "view", 1_700_000_000_200)),
    ]
    assert got[2][0] == 4
    assert isinstance(got[2][1], Refusal) and got[2][1].reason == "unknown_event_type"


def test_headerless_indices_and_quoted_cells() -> None:
    layout = parse_columns("user=0,item=1,timestamp=2", header=False)
    text = '"u1",i1,1700000000,"a note, with a comma"\n'
    got = list(read_csv(_lines(text), layout, id_prefix="my file"))
    assert got == [(1, InteractionEvent("my_file-1", "u1", "i1", "view", 1_700_000_000_000))]


def test_layout_errors_are_raised_up_front() -> None:
    with pytest.raises(ValueError, match="lacks"):
        CsvLayout(columns={"user": "u", "item": "i"})
    with pytest.raises(ValueError, match="unknown column"):
        parse_columns("user=u,item=i,timestamp=t,colour=c")
    with pytest.raises(ValueError, match="index"):
        parse_columns("user=u,item=i,timestamp=t", header=False)
    with pytest.raises(ValueError, match="header has no column"):
        list(read_csv(_lines("a,b,c\n1,2,3\n"), PRESETS["ml-csv"]))


def test_invalid_utf8_row_is_reported() -> None:
    layout = parse_columns("user=0,item=1,timestamp=2", header=False)
    got = list(read_csv([b"u1,i1,1700000000\n", b"u\xff,i1,1700000000\n"], layout))
    assert isinstance(got[0][1], InteractionEvent)
    assert got[1][0] == 2 and isinstance(got[1][1], Refusal)
    assert got[1][1].reason == "invalid_utf8"


def test_jsonl_round_trips_simulated_events_and_reports_malformed_lines(tmp_path: Path) -> None:
    config = SimConfig(users=20, items=15, categories=3, events=300, new_item_rate=10)
    events = list(simulate(config, seed=2))
    # An empty message is a blank line in a file, which readers skip by design.
    faults = [(raw, reason) for raw, reason in malformed_messages(None, seed=2) if raw]
    path = tmp_path / "mixed.jsonl"
    with path.open("wb") as out:
        for event in events:
            out.write(encode(event) + b"\n")
        out.write(b"\n")
        for raw, _ in faults:
            out.write(raw + b"\n")
    got = list(read_file(path))
    assert [e for _, e in got[: len(events)]] == events
    assert any(isinstance(e, CatalogEvent) for e in events)
    tail = got[len(events) :]
    assert [line for line, _ in tail] == list(range(len(events) + 2, len(events) + 2 + len(faults)))
    assert [r.reason for _, r in tail if isinstance(r, Refusal)] == [reason for _, reason in faults]


def test_jsonl_catalog_lines_are_told_by_op() -> None:
    text = (
        '{"event_id":"c1","op":"upsert","item_id":"i1","ts":1700000000000,"categories":["books"]}\n'
        '{"event_id":"c2","op":"delete","item_id":"i1","ts":1700000000000}\n'
        "[1, 2]\n"
    )
    got = list(read_jsonl(_lines(text)))
    assert got[0] == (1, CatalogEvent("c1", "upsert", "i1", 1_700_000_000_000, ("books",)))
    assert isinstance(got[1][1], Refusal) and got[1][1].reason == "unknown_event_type"
    assert isinstance(got[2][1], Refusal) and got[2][1].reason == "not_an_object"
