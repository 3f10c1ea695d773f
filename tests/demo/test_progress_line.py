"""The demo's progress line: one line per change off a terminal, rewritten in place on one."""

from __future__ import annotations

import doctest
import io

from rich.console import Console

import freshet.cli.progress_line
from freshet.cli.progress_line import ProgressLine

POLLS = ["applied 0/40,000"] * 9 + ["applied 12,500/40,000"] * 3 + ["applied 40,000/40,000"]


def test_off_a_terminal_each_update_is_one_line() -> None:
    out = io.StringIO()
    line = ProgressLine(Console(file=out, force_terminal=False, width=120))
    for text in POLLS:
        line.show(text)
    line.close()
    assert out.getvalue().splitlines() == [
        "applied 0/40,000",
        "applied 12,500/40,000",
        "applied 40,000/40,000",
    ]
    assert "\r" not in out.getvalue()


def test_on_a_terminal_the_line_is_rewritten_then_ended() -> None:
    out = io.StringIO()
    line = ProgressLine(Console(file=out, force_terminal=True, width=120, color_system=None))
    for text in POLLS:
        line.show(text)
    line.close()
    text = out.getvalue()
    assert text.count("\r") == len(POLLS)
    assert text.endswith("applied 40,000/40,000\r\n")


def test_docstring_example() -> None:
    assert doctest.testmod(freshet.cli.progress_line).failed == 0
