"""A progress figure that rewrites itself on a terminal and logs one line per change elsewhere.

Rewriting with a carriage return only works on a terminal: in a log file or a CI
console each rewrite becomes a line, so a wait that polls twice a second printed the
same "applied 0/40,000" again and again. Off a terminal a line is printed only when
the text changes.
"""

from __future__ import annotations

from rich.console import Console


class ProgressLine:
    """Shows the latest progress text on ``console``.

    >>> import io
    >>> out = io.StringIO()
    >>> line = ProgressLine(Console(file=out, force_terminal=False))
    >>> for text in ["applied 0/10", "applied 0/10", "applied 4/10", "applied 10/10"]:
    ...     line.show(text)
    >>> line.close()
    >>> print(out.getvalue(), end="")
    applied 0/10
    applied 4/10
    applied 10/10
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self._last: str | None = None

    def show(self, text: str) -> None:
        """Rewrite the line on a terminal; elsewhere print ``text`` if it is new."""
        if self.console.is_terminal:
            self.console.print(text, end="\r", highlight=False)
        elif text != self._last:
            self.console.print(text, highlight=False)
        self._last = text

    def close(self) -> None:
        """End the rewritten line on a terminal, so later output starts below it."""
        if self.console.is_terminal and self._last is not None:
            self.console.print()
