"""``freshet bench``: run the benchmarks in ``bench/`` and write their reports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

bench_app = typer.Typer(help="Benchmarks: throughput, latency, retrieval, quality.")


@bench_app.command("all")
def bench_all(
    quick: Annotated[
        bool, typer.Option("--quick", envvar="FRESHET_BENCH_QUICK", help="Minutes, not hours.")
    ] = False,
    out: Annotated[
        Path, typer.Option(envvar="FRESHET_BENCH_OUT", help="Where JSON, tables and plots go.")
    ] = Path("docs/benchmarks"),
    only: Annotated[
        list[str] | None,
        typer.Option(envvar="FRESHET_BENCH_ONLY", help="Run only these (repeatable)."),
    ] = None,
) -> None:
    """Ingest, stream, ann, ranker, train_speed, prequential, evaluate, trade-off, in order."""
    from bench.run_all import main

    argv = ["--out", str(out), *(["--quick"] if quick else [])]
    if only:
        argv += ["--only", *only]
    raise typer.Exit(main(argv))


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")
