"""What ``freshet produce`` and ``freshet simulate`` share: sinks, pacing, the summary.

Both commands push a stream of events (and, for fault injection, raw bytes) into a
sink, either Kafka or a JSONL file, at a paced rate, with a progress bar, and end with
one summary table. Heavy imports (rich, kafka) happen inside functions so that the CLI
starts fast.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol

from freshet.wiring import kafka_of
from schemas.codec import Refusal, encode
from schemas.events import CatalogEvent, InteractionEvent

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from freshet.settings import Settings

MAX_REFUSALS_SHOWN = 20


class Pacer:
    """Holds a loop to ``rate`` items per second; ``rate`` <= 0 means no pacing."""

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._start = clock()

    def wait(self, done: int) -> None:
        """Sleep until item number ``done`` (0-based) is due."""
        if self.rate <= 0:
            return
        ahead = self._start + done / self.rate - self._clock()
        if ahead > 0.002:  # sleeping for less costs more than it paces
            self._sleep(ahead)


class Sink(Protocol):
    def send(self, event: InteractionEvent | CatalogEvent) -> None: ...
    def send_raw(self, value: bytes) -> None: ...
    def close(self) -> tuple[int, int, Counter[str]] | None: ...


class KafkaSink:
    """Sends to the freshet topics, creating them first if needed (waiting for the broker)."""

    def __init__(self, settings: Settings) -> None:
        from streams.kafka_io.event_producer import EventProducer
        from streams.kafka_io.kafka_wait import wait_for_topics

        wait_for_topics(kafka_of(settings))
        self._producer = EventProducer(kafka_of(settings))
        self.send = self._producer.send

    def send_raw(self, value: bytes) -> None:
        self._producer.send_raw(value)

    def close(self) -> tuple[int, int, Counter[str]]:
        stats = self._producer.close()
        return stats.delivered, stats.failed, stats.errors


class FileSink:
    """Writes one JSON object (or raw message) per line."""

    def __init__(self, path: Path) -> None:
        self._out: IO[bytes] = path.open("wb")

    def send(self, event: InteractionEvent | CatalogEvent) -> None:
        self._out.write(encode(event) + b"\n")

    def send_raw(self, value: bytes) -> None:
        self._out.write(value + b"\n")

    def close(self) -> None:
        self._out.close()


@dataclass
class Tally:
    """Counts for the closing summary."""

    sent: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    refused_lines: list[tuple[int, Refusal]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def count(self, event: InteractionEvent | CatalogEvent) -> None:
        self.sent[event.type if isinstance(event, InteractionEvent) else f"catalog {event.op}"] += 1

    def refuse(self, line_no: int, refusal: Refusal) -> None:
        self.refused[refusal.reason] += 1
        if len(self.refused_lines) < MAX_REFUSALS_SHOWN:
            self.refused_lines.append((line_no, refusal))


def progress_bar(console: Console) -> Progress:
    """A rich progress bar with count, rate and time left."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def print_summary(
    console: Console,
    title: str,
    tally: Tally,
    delivery: tuple[int, int, Counter[str]] | None,
    destination: str,
    extra: dict[str, str] | None = None,
) -> None:
    """The closing table: what was sent, per type; what was refused, by line; the rate."""
    from rich.table import Table

    elapsed = max(time.monotonic() - tally.started, 1e-9)
    total = sum(tally.sent.values())
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("what")
    table.add_column("count", justify="right")
    for name, n in sorted(tally.sent.items()):
        table.add_row(f"sent: {name}", f"{n:,}")
    table.add_row("[bold]sent in all", f"[bold]{total:,}")
    for reason, n in sorted(tally.refused.items()):
        table.add_row(f"[red]refused: {reason}", f"[red]{n:,}")
    if delivery is not None:
        delivered, failed, errors = delivery
        table.add_row("delivered (acks=all)", f"{delivered:,}")
        table.add_row("[red]delivery failed" if failed else "delivery failed", f"{failed:,}")
        for name, n in errors.most_common():
            table.add_row(f"[red]  {name}", f"{n:,}")
    table.add_row("destination", destination)
    table.add_row("elapsed", f"{elapsed:.1f} s")
    table.add_row("rate achieved", f"{total / elapsed:,.0f} msg/s")
    for name, value in (extra or {}).items():
        table.add_row(name, value)
    console.print(table)
    if tally.refused_lines:
        lines = Table(title="refused lines (first shown)", header_style="bold red")
        lines.add_column("line", justify="right")
        lines.add_column("reason")
        lines.add_column("detail")
        for line_no, refusal in tally.refused_lines:
            lines.add_row(str(line_no), refusal.reason, refusal.detail[:120])
        console.print(lines)
