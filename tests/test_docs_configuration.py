"""docs/configuration.md documents every ``Settings`` field, and nothing else, as a row.

Only the first cell of each Markdown table row counts: a row documents a setting when
that cell names a ``FRESHET_*`` variable. Prose, flag tables and examples may mention
variables freely (command-specific ones such as ``FRESHET_TRAIN_*`` included).
"""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path
from typing import Any, get_type_hints

import pytest

from freshet.settings import Settings

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
ENV_NAME = re.compile(r"`(FRESHET_[A-Z0-9_]+)`")


def documented_rows(text: str) -> list[tuple[str, list[str]]]:
    """(variable, cells) for each table row whose first cell names a FRESHET_ variable."""
    rows: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped.startswith("|"):
            continue
        cells = [c.strip() for c in stripped.strip("|").split("|")]
        match = ENV_NAME.search(cells[0]) if cells else None
        if match is not None:
            rows.append((match.group(1), cells))
    return rows


def expected_types() -> dict[str, str]:
    """Env name -> the type name the docs should show, for every Settings field."""
    hints: dict[str, Any] = get_type_hints(Settings)
    return {f"FRESHET_{f.name.upper()}": hints[f.name].__name__ for f in fields(Settings)}


@pytest.fixture(scope="module")
def rows() -> list[tuple[str, list[str]]]:
    return documented_rows(DOC.read_text(encoding="utf-8"))


def test_every_settings_field_is_documented(rows: list[tuple[str, list[str]]]) -> None:
    documented = {name for name, _ in rows}
    missing = sorted(expected_types().keys() - documented)
    assert not missing, f"docs/configuration.md lacks rows for {missing}"


def test_no_unknown_setting_is_documented(rows: list[tuple[str, list[str]]]) -> None:
    unknown = sorted({name for name, _ in rows} - expected_types().keys())
    assert not unknown, f"docs/configuration.md documents settings that do not exist: {unknown}"


def test_each_setting_is_documented_once(rows: list[tuple[str, list[str]]]) -> None:
    names = [name for name, _ in rows]
    repeated = sorted({n for n in names if names.count(n) > 1})
    assert not repeated, f"documented more than once: {repeated}"


def test_documented_types_match(rows: list[tuple[str, list[str]]]) -> None:
    want = expected_types()
    wrong = {
        name: (cells[1] if len(cells) > 1 else "", want[name])
        for name, cells in rows
        if name in want and (len(cells) < 2 or cells[1].strip("` ") != want[name])
    }
    assert not wrong, f"type column (documented, actual) differs: {wrong}"


def test_secrets_are_marked(rows: list[tuple[str, list[str]]]) -> None:
    secrets = {name for name, t in expected_types().items() if t == "Secret"}
    assert secrets, "Settings has no Secret fields; this test needs revisiting"
    unmarked = sorted(name for name, cells in rows if name in secrets and "🔒" not in cells[0])
    assert not unmarked, f"secrets not marked 🔒 in docs/configuration.md: {unmarked}"


def test_row_parser_reads_first_cells_only() -> None:
    text = "\n".join(
        [
            "Prose mentions `FRESHET_NOT_A_ROW`.",
            "| Variable | Type |",
            "|---|---|",
            "| `FRESHET_LIST_SIZE` | `int` |",
            "| `--partitions` | `FRESHET_TOPIC_PARTITIONS` |",
            "| `FRESHET_API_TOKEN` 🔒 | `Secret` |",
        ]
    )
    assert [name for name, _ in documented_rows(text)] == [
        "FRESHET_LIST_SIZE",
        "FRESHET_API_TOKEN",
    ]
