"""The tail breakdown's join of events, the probe's rows and lists, on a worked example."""

from __future__ import annotations

from pathlib import Path

import orjson

from bench.tail_breakdown import breakdown, late_batches, load_trace, summary

POINT = {
    "rate": 800.0,
    # user, send stamp, partition, offset, producer ack
    "events": [["a", 1000, 0, 0, 1009.0], ["b", 1005, 0, 1, 1010.0], ["c", 1020, 1, 0, 0.0]],
    # user, event_ts, published_ts: b's event reflected only by a later list
    "lists": [["a", 1000, 1035], ["b", 900, 1035], ["b", 1005, 1060], ["c", 1020, 1048]],
}


def _trace(path: Path) -> Path:
    rows = [
        {"k": "chunk", "t": 1012.0, "p": 0, "o0": 0, "o1": 1},
        {"k": "chunk", "t": 1030.0, "p": 1, "o0": 0, "o1": 0},
        {"k": "batch", "t0": 1013.0, "t1": 1040.0, "n": 2, "spans": [[0, 0, 1]],
         "stages": {"score": 20.0}},
        {"k": "batch", "t0": 1040.0, "t1": 1050.0, "n": 1, "spans": [[1, 0, 0]],
         "stages": {"score": 8.0}},
        {"k": "slow", "t": 1031.0, "ms": 6.0, "cpu": 0.2, "what": "task Fetcher._fetcher"},
        {"k": "gc", "t": 1045.0, "ms": 1.0, "gen": 2, "collected": 0},
    ]  # fmt: skip
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


def test_each_event_splits_into_fetch_wait_and_its_own_batch(tmp_path: Path) -> None:
    trace = load_trace(_trace(tmp_path / "worker.jsonl"))
    rows = {r["user"]: r for r in breakdown(POINT, trace)}
    a, b, c = rows["a"], rows["b"], rows["c"]
    assert (a["total"], a["ack"], a["to_worker"], a["wait"], a["own"]) == (35, 9.0, 12.0, 1.0, 22.0)
    assert a["own_batch"] and not b["own_batch"]  # b waited for a list after its batch
    assert b["total"] == 55 and b["own"] == 47.0
    assert (c["to_worker"], c["wait"], c["own"]) == (10.0, 10.0, 8.0)
    assert c["ack"] != c["ack"]  # no ack recorded: NaN
    text = summary(list(rows.values()), trace)
    assert "Fetcher._fetcher x1" in text  # held the loop while c waited (1030-1040)
    assert "reflected by own batch 2/3" in text


def test_late_batches_tell_a_lone_late_batch_from_a_backlog(tmp_path: Path) -> None:
    trace = load_trace(_trace(tmp_path / "worker.jsonl"))
    rows = breakdown(POINT, trace)
    # The first batch started 13 ms after its oldest event, the second 20 ms after its own.
    assert late_batches(rows, trace, behind_ms=15) == {
        "batches": 2, "late": 1, "lone_late": 1, "lone_late_events": 1, "lone_late_deferred": 0
    }  # fmt: skip
    assert late_batches(rows, trace, behind_ms=10) == {
        "batches": 2, "late": 2, "lone_late": 1, "lone_late_events": 2, "lone_late_deferred": 1
    }  # fmt: skip
