"""The ``freshet`` command: one Typer app, one module per command group.

Every module in this package that defines ``register(app)`` is picked up, so command
groups live apart and import their heavy dependencies only when they run.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import typer

from freshet.cli.context import root_callback

app = typer.Typer(
    name="freshet",
    help="freshet: a streaming real-time recommender (Kafka, Faust, Redis, ONNX Runtime).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
app.callback()(root_callback)

for _mod in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda m: m.name):
    if _mod.name in {"context", "__main__"}:
        continue
    _module = importlib.import_module(f"freshet.cli.{_mod.name}")
    _register = getattr(_module, "register", None)
    if _register is not None:
        _register(app)


def main() -> None:
    """Console entry point."""
    app()
