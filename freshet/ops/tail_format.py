"""How ``freshet tail`` shows recommendation lists: pure functions over the message.

Lists on the topic are written by freshet, but a tail must survive anything a topic
can hold, so decoding here returns ``None`` rather than raising. Every string taken
from a message is rendered as plain text, never as rich markup.
"""

from __future__ import annotations

import datetime as dt

import orjson
from rich.console import Group
from rich.table import Table
from rich.text import Text

from schemas.codec import decode_recommendation
from schemas.recommendation import Recommendation


def decode_list(raw: bytes) -> Recommendation | None:
    """The list in a recommendations-topic value, or ``None`` if it is not one."""
    try:
        return decode_recommendation(raw)
    except (ValueError, KeyError, TypeError, AttributeError):  # orjson errors are ValueErrors
        return None


def latency_ms(rec: Recommendation) -> int | None:
    """Event time of the triggering event to publish time, in ms; ``None`` without one."""
    if rec.event_ts is None:
        return None
    return rec.published_ts - rec.event_ts


def json_line(rec: Recommendation) -> str:
    """The list as one line of the contract's JSON (``schemas/json/recommendation.v1.json``)."""
    return orjson.dumps(rec.to_dict()).decode("utf-8")


def headline(rec: Recommendation, partition: int, offset: int) -> Text:
    """One line: user, strategy, model version, latency, publish time and position."""
    latency = latency_ms(rec)
    published = dt.datetime.fromtimestamp(rec.published_ts / 1000, tz=dt.UTC)
    clock = f"{published:%H:%M:%S}.{published.microsecond // 1000:03d}Z"
    line = Text()
    line.append(rec.user_id, style="bold")
    line.append("  ")
    line.append(rec.strategy, style=_STRATEGY_STYLE.get(rec.strategy, ""))
    line.append(f"  model {rec.model_version or '-'}")
    line.append(f"  {'-' if latency is None else f'{latency:,} ms'} event→publish", style="cyan")
    line.append(f"  {clock}", style="dim")
    line.append(f"  p{partition}@{offset}", style="dim")
    return line


def render_list(rec: Recommendation, partition: int, offset: int, top: int = 10) -> Group:
    """The headline and a table of the top ``top`` items with their reasons."""
    table = Table(box=None, pad_edge=False, show_header=True, header_style="dim")
    table.add_column("#", justify="right", style="dim")
    table.add_column("item")
    table.add_column("score", justify="right")
    table.add_column("reason")
    for rank, item in enumerate(rec.items[:top], start=1):
        reason = Text(item.reason)
        if item.reason_item_id is not None:
            reason.append(f" ← {item.reason_item_id}", style="dim")
        table.add_row(str(rank), Text(item.item_id), f"{item.score:.4f}", reason)
    parts: list[Text | Table] = [headline(rec, partition, offset)]
    if rec.items:
        parts.append(table)
    else:
        parts.append(Text("  (empty list)", style="dim"))
    hidden = len(rec.items) - top
    if hidden > 0:
        parts.append(Text(f"  … and {hidden} more", style="dim"))
    return Group(*parts)


_STRATEGY_STYLE = {"personalised": "green", "cold_start": "yellow", "model_free": "magenta"}
