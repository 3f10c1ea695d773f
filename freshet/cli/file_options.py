"""The file-layout options that ``train``, ``evaluate`` and ``produce`` share.

Each command reads its data file through ``streams.core.file_reader``; these options say
how: the format (guessed from the suffix when left out), a CSV preset or a column
mapping, its delimiter, header and timestamp unit, and an item side file with titles
and genres (by default a MovieLens ``movies`` file next to the data file).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

if TYPE_CHECKING:
    from schemas.events import CatalogEvent, InteractionEvent
    from streams.core.file_reader import CsvLayout


class FileFormatChoice(StrEnum):
    jsonl = "jsonl"
    csv = "csv"


class PresetChoice(StrEnum):
    movielens = "movielens"
    ml_csv = "ml-csv"


class TsUnit(StrEnum):
    s = "s"
    ms = "ms"


Format = Annotated[
    FileFormatChoice | None,
    typer.Option(
        "--format",
        help="File format; guessed from the suffix when left out (.jsonl/.ndjson: jsonl).",
    ),
]
Preset = Annotated[
    PresetChoice | None,
    typer.Option(
        help="CSV layout: movielens (ratings.dat, user::item::rating::ts) or "
        "ml-csv (userId,movieId,rating,timestamp). Default for .dat: movielens, else ml-csv.",
    ),
]
Columns = Annotated[
    str | None,
    typer.Option(
        help="CSV column mapping instead of a preset, e.g. "
        "user=uid,item=sku,timestamp=ts,rating=stars,type=kind (fields: user, item, "
        "timestamp, rating, value, type, event_id); 0-based indices with --no-header.",
    ),
]
Delimiter = Annotated[str, typer.Option(help="CSV delimiter (with --columns).")]
TimestampUnit = Annotated[TsUnit, typer.Option(help="CSV timestamp unit (with --columns).")]
Header = Annotated[bool, typer.Option(help="Whether the CSV has a header (with --columns).")]
ItemFile = Annotated[
    Path | None,
    typer.Option(
        help="Item side file (MovieLens movies.csv/.dat: titles and genres); "
        "default: a movies file next to FILE; '' for none.",
    ),
]
RatingsAsInteractions = Annotated[
    bool,
    typer.Option(
        "--ratings-as-interactions",
        envvar="FRESHET_RATINGS_AS_INTERACTIONS",
        help="Ignore rating values: every rating is a plain interaction (the rating rule, "
        "docs/design.md 'Ratings: one rule').",
    ),
]


@dataclass(frozen=True)
class FileSource:
    """How to read one data file: its format, CSV layout and item side file."""

    fmt: Literal["jsonl", "csv"] | None = None
    layout: CsvLayout | None = None
    items: Path | str | None = None
    ratings_as_interactions: bool = False

    def events(
        self, path: Path, refused: dict[str, int]
    ) -> Iterator[InteractionEvent | CatalogEvent]:
        """Every event of ``path``, item side file first; refused lines counted by reason."""
        from streams.core.file_reader import read_events

        return read_events(
            path,
            refused,
            fmt=self.fmt,
            layout=self.layout,
            items=self.items,
            ratings_as_interactions=self.ratings_as_interactions,
        )


def file_source(
    fmt: FileFormatChoice | None = None,
    preset: PresetChoice | None = None,
    columns: str | None = None,
    delimiter: str = ",",
    ts_unit: TsUnit = TsUnit.s,
    header: bool = True,
    item_file: Path | None = None,
    ratings_as_interactions: bool = False,
) -> FileSource:
    """The options as one ``FileSource``; a bad ``--columns`` or preset is a usage error."""
    from streams.core.file_reader import layout_of

    try:
        layout = layout_of(
            preset.value if preset else None,
            columns,
            delimiter=delimiter,
            header=header,
            ts_unit=ts_unit.value,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--columns") from None
    items = None if item_file is None else ("" if str(item_file) in {"", "."} else item_file)
    return FileSource(fmt.value if fmt else None, layout, items, ratings_as_interactions)
