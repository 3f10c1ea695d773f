"""Read interaction and catalog events from files: JSONL, and CSV-like ratings logs.

Readers take an iterable of raw lines (bytes) and yield ``(line_no, event)`` or
``(line_no, Refusal)`` one line at a time, so memory stays constant however large the
file. A line that cannot be read is reported with its number, never dropped; only
blank lines are skipped. Every event goes through the contract's validation
(``schemas.codec``), so what a file reader accepts, the stream accepts too.

CSV layouts name which column holds which field. Two presets cover MovieLens::

    movielens  ratings.dat    user::item::rating::timestamp   (seconds, no header)
    ml-csv     ratings.csv    userId,movieId,rating,timestamp (seconds, header)
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import orjson

from schemas.codec import DecodeLimits, Refusal, catalog_from_obj, interaction_from_obj
from schemas.events import CatalogEvent, EventType, InteractionEvent

Event = InteractionEvent | CatalogEvent
Read = tuple[int, Event | Refusal]
FileFormat = Literal["jsonl", "csv"]

COLUMN_FIELDS = ("user", "item", "timestamp", "rating", "value", "type", "event_id")
"""Fields a CSV column can map to; ``user``, ``item`` and ``timestamp`` are required."""

DEFAULT_LIMITS = DecodeLimits()
_REQUIRED = ("user", "item", "timestamp")
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.@+=/-]")


@dataclass(frozen=True, slots=True)
class CsvLayout:
    """How to read one delimited ratings file.

    Attributes:
        columns: Field name (see ``COLUMN_FIELDS``) to column: a header name when
            ``header`` is true, else a 0-based column index.
        delimiter: Field separator; more than one character (``::``) is allowed.
        header: Whether the first line names the columns.
        ts_unit: Unit of the timestamp column, seconds or milliseconds since epoch.
        default_type: Event type of rows without a ``type`` column: ``rating`` when a
            rating column is mapped, else this.
    """

    columns: Mapping[str, str | int] = field(default_factory=dict)
    delimiter: str = ","
    header: bool = True
    ts_unit: Literal["s", "ms"] = "s"
    default_type: EventType = "view"

    def __post_init__(self) -> None:
        unknown = set(self.columns) - set(COLUMN_FIELDS)
        if unknown:
            raise ValueError(f"unknown column field(s) {sorted(unknown)}; use {COLUMN_FIELDS}")
        missing = [f for f in _REQUIRED if f not in self.columns]
        if missing:
            raise ValueError(f"column mapping lacks {missing}")
        if not self.delimiter:
            raise ValueError("delimiter must not be empty")
        if not self.header and not all(isinstance(c, int) for c in self.columns.values()):
            raise ValueError("without a header, columns must be 0-based indices")


PRESETS: dict[str, CsvLayout] = {
    "movielens": CsvLayout(
        columns={"user": 0, "item": 1, "rating": 2, "timestamp": 3},
        delimiter="::",
        header=False,
    ),
    "ml-csv": CsvLayout(
        columns={"user": "userId", "item": "movieId", "rating": "rating", "timestamp": "timestamp"}
    ),
}


def parse_columns(
    spec: str, *, delimiter: str = ",", header: bool = True, ts_unit: Literal["s", "ms"] = "s"
) -> CsvLayout:
    """A layout from ``user=userId,item=movieId,rating=rating,timestamp=ts,...``.

    Without a header, the columns are given as 0-based indices (``user=0,item=1,...``).
    """
    columns: dict[str, str | int] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, column = part.partition("=")
        if not sep or not column.strip():
            raise ValueError(f"column mapping {part!r} is not field=column")
        column = column.strip()
        if header:
            columns[name.strip()] = column
        elif column.isdigit():
            columns[name.strip()] = int(column)
        else:
            raise ValueError(f"without a header, column of {name!r} must be an index")
    return CsvLayout(columns=columns, delimiter=delimiter, header=header, ts_unit=ts_unit)


def read_jsonl(lines: Iterable[bytes], limits: DecodeLimits = DEFAULT_LIMITS) -> Iterator[Read]:
    """One event object per line; catalog events are the lines with an ``op`` field."""
    for line_no, raw in enumerate(lines, start=1):
        line = raw.rstrip(b"\r\n")
        if not line.strip() and len(line) <= limits.max_bytes:
            continue
        obj = _parse_json(line, limits)
        if isinstance(obj, Refusal):
            yield line_no, obj
        elif isinstance(obj, dict) and "op" in obj:
            yield line_no, catalog_from_obj(obj, limits)
        else:
            yield line_no, interaction_from_obj(obj, limits)


def read_csv(
    lines: Iterable[bytes],
    layout: CsvLayout,
    id_prefix: str = "row",
    limits: DecodeLimits = DEFAULT_LIMITS,
) -> Iterator[Read]:
    """Rows of a delimited file as interaction events.

    Event ids come from the ``event_id`` column if mapped, else ``<id_prefix>-<line>``,
    so reading the same file twice gives the same ids (and the stream dedups a replay).

    Raises:
        ValueError: The header lacks a mapped column (the layout does not fit the file).
    """
    prefix = _ID_UNSAFE.sub("_", id_prefix)[:100] or "row"
    index: dict[str, int] | None = None
    if not layout.header:
        index = {name: int(col) for name, col in layout.columns.items()}
    for line_no, raw in enumerate(lines, start=1):
        try:
            text = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as exc:
            yield line_no, Refusal("invalid_utf8", f"not UTF-8 at byte {exc.start}")
            continue
        if not text.strip():
            continue
        cells = _split(text, layout.delimiter)
        if index is None:
            index = _header_index(cells, layout, line_no)
            continue
        yield line_no, _row_event(cells, index, layout, f"{prefix}-{line_no}", limits)


def read_file(
    path: str | Path,
    fmt: FileFormat | None = None,
    layout: CsvLayout | None = None,
    limits: DecodeLimits = DEFAULT_LIMITS,
) -> Iterator[Read]:
    """Stream events from a file, the format guessed from its suffix when not given.

    ``.jsonl``/``.ndjson``/``.json`` are JSONL; anything else is CSV, read with
    ``layout``, or the ``movielens`` preset for ``.dat`` and ``ml-csv`` otherwise.
    """
    path = Path(path)
    fmt = fmt or guess_format(path)
    with path.open("rb") as lines:
        if fmt == "jsonl":
            yield from read_jsonl(lines, limits)
        else:
            layout = layout or PRESETS["movielens" if path.suffix == ".dat" else "ml-csv"]
            yield from read_csv(lines, layout, id_prefix=path.stem, limits=limits)


def guess_format(path: Path) -> FileFormat:
    return "jsonl" if path.suffix.lower() in {".jsonl", ".ndjson", ".json"} else "csv"


def _parse_json(line: bytes, limits: DecodeLimits) -> object:
    # The same order of checks as the events-topic decoder, so a line and a message
    # with the same bytes get the same refusal reason.
    if len(line) > limits.max_bytes:
        return Refusal("oversized", f"line is {len(line)} bytes, limit {limits.max_bytes}")
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Refusal("invalid_utf8", f"not UTF-8 at byte {exc.start}")
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return Refusal("invalid_json", f"not JSON: {str(exc)[:200]}")


def _split(text: str, delimiter: str) -> list[str]:
    if len(delimiter) == 1:
        return next(csv.reader([text], delimiter=delimiter), [])
    return text.split(delimiter)


def _header_index(cells: list[str], layout: CsvLayout, line_no: int) -> dict[str, int]:
    names = [c.strip() for c in cells]
    index: dict[str, int] = {}
    for name, column in layout.columns.items():
        if column not in names:
            raise ValueError(f"line {line_no}: header has no column {column!r} (for {name})")
        index[name] = names.index(str(column))
    return index


def _row_event(
    cells: list[str], index: Mapping[str, int], layout: CsvLayout, row_id: str, limits: DecodeLimits
) -> InteractionEvent | Refusal:
    needed = max(index.values()) + 1
    if len(cells) < needed:
        return Refusal("missing_field", f"row has {len(cells)} columns, needs {needed}")
    cell = {name: cells[col].strip() for name, col in index.items()}

    ts = _number(cell["timestamp"])
    if ts is None:
        return Refusal("wrong_type", f"timestamp {cell['timestamp'][:32]!r} is not a number")
    ts_ms = round(ts * 1000) if layout.ts_unit == "s" else round(ts)

    value_text = cell.get("rating") or cell.get("value") or ""
    value = _number(value_text) if value_text else None
    if value_text and value is None:
        return Refusal("wrong_type", f"rating/value {value_text[:32]!r} is not a number")

    etype = cell.get("type") or ("rating" if "rating" in index else layout.default_type)
    obj: dict[str, object] = {
        "event_id": cell.get("event_id") or row_id,
        "user_id": cell["user"],
        "item_id": cell["item"],
        "type": etype,
        "ts": ts_ms,
    }
    if value is not None:
        obj["value"] = value
    return interaction_from_obj(obj, limits)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def layout_of(
    preset: str | None = None,
    columns: str | None = None,
    *,
    delimiter: str = ",",
    header: bool = True,
    ts_unit: Literal["s", "ms"] = "s",
) -> CsvLayout | None:
    """The layout the command-line options name: ``--columns`` wins over ``--preset``.

    None (neither given) lets ``read_file`` pick a preset from the file's suffix.

    Raises:
        ValueError: Unknown preset or a malformed column mapping.
    """
    if columns:
        return parse_columns(columns, delimiter=delimiter, header=header, ts_unit=ts_unit)
    if preset:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; use one of {sorted(PRESETS)}")
        return PRESETS[preset]
    return None


def item_file_of(path: str | Path) -> Path | None:
    """The MovieLens side file next to a ratings file (``movies.csv``/``.dat``), if any."""
    path = Path(path)
    if path.suffix.lower() in {".jsonl", ".ndjson", ".json"}:
        return None
    side = path.with_name("movies.dat" if path.suffix == ".dat" else "movies.csv")
    return side if side.exists() and side != path else None


def read_item_file(path: str | Path, limits: DecodeLimits = DEFAULT_LIMITS) -> Iterator[Read]:
    """Catalog upserts from a MovieLens item file: id, title (text) and genres (categories).

    ``movies.csv`` (``movieId,title,genres``, quoted titles, UTF-8) and ``movies.dat``
    (``id::title::genres``, Latin-1) are both read; genres are ``|``-separated and
    ``(no genres listed)`` means none. Upserts carry the earliest time the contract
    accepts (``limits.min_ts``), so in time order they come before every interaction.
    """
    path = Path(path)
    dat = path.suffix == ".dat"
    with path.open("rb") as lines:
        for line_no, raw in enumerate(lines, start=1):
            text = raw.decode("latin-1" if dat else "utf-8", errors="replace").rstrip("\r\n")
            if not text.strip() or (line_no == 1 and not dat):
                continue  # the CSV header
            cells = text.split("::") if dat else _split(text, ",")
            if len(cells) < 3:
                yield line_no, Refusal("missing_field", f"row has {len(cells)} columns, needs 3")
                continue
            genres = [g for g in cells[-1].split("|") if g and g != "(no genres listed)"]
            obj = {
                "event_id": f"{_ID_UNSAFE.sub('_', path.stem)}-{line_no}",
                "op": "upsert",
                "item_id": cells[0].strip(),
                "ts": limits.min_ts,
                "categories": genres,
                "text": ",".join(cells[1:-1]).strip(),
            }
            yield line_no, catalog_from_obj(obj, limits)


def as_interaction(event: InteractionEvent) -> InteractionEvent:
    """A rating without its value: a plain interaction under the rating rule
    (``schemas.event_weights``); other events as they are."""
    return replace(event, value=None) if event.type == "rating" else event


def read_events(
    path: str | Path,
    refused: dict[str, int] | None = None,
    *,
    fmt: FileFormat | None = None,
    layout: CsvLayout | None = None,
    items: str | Path | None = None,
    ratings_as_interactions: bool = False,
) -> Iterator[Event]:
    """Every event of a data file, item side file first; refused lines counted by reason.

    With ``ratings_as_interactions`` a rating's value is dropped, so that every reader
    of the events counts it as a plain interaction (the rating rule of
    ``schemas.event_weights``).

    The one entry point of ``freshet train``, ``freshet evaluate`` and
    ``bench.prequential`` (``freshet produce`` streams ``read_file`` itself, to report
    each refused line). ``items`` is an item side file (``read_item_file``); when None,
    a MovieLens ``movies`` file next to the data file is used if there is one; pass
    ``""`` for none.
    """
    counts = {} if refused is None else refused
    side = item_file_of(path) if items is None else (Path(items) if items else None)
    reads = [read_item_file(side)] if side is not None else []
    reads.append(read_file(path, fmt, layout))
    for source in reads:
        for _line, out in source:
            if isinstance(out, Refusal):
                counts[out.reason] = counts.get(out.reason, 0) + 1
            elif ratings_as_interactions and isinstance(out, InteractionEvent):
                yield as_interaction(out)
            else:
                yield out
