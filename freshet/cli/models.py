"""``freshet models``: list, inspect and roll back model bundles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from freshet.cli.context import settings_of

models_app = typer.Typer(help="Model bundles: list, show, rollback.", no_args_is_help=True)

BundleDir = Annotated[
    Path | None, typer.Option(envvar="FRESHET_BUNDLE_DIR", help="Where bundles live.")
]


def _dir(ctx: typer.Context, bundle_dir: Path | None) -> Path:
    return bundle_dir or settings_of(ctx).bundle_dir


@models_app.command("list")
def list_command(ctx: typer.Context, bundle_dir: BundleDir = None) -> None:
    """Bundles in the bundle directory, oldest first; * marks CURRENT."""
    from rich.console import Console
    from rich.table import Table

    from inference.bundle import (
        BundleError,
        list_versions,
        metric_summary,
        read_current,
        read_manifest,
    )

    root = _dir(ctx, bundle_dir)
    current = read_current(root)
    table = Table("", "version", "created", "items", "dim", "N", "metric", title=str(root))
    for version in list_versions(root):
        try:
            man = read_manifest(root / version)
            row = [man.created_at, str(man.item_count), str(man.dim), str(man.history_len)]
            row.append(metric_summary(man))
        except BundleError as exc:
            row = ["", "", "", "", f"[red]{exc}"]
        table.add_row("*" if version == current else "", version, *row)
    Console().print(table)


@models_app.command("show")
def show_command(
    ctx: typer.Context,
    version: Annotated[str | None, typer.Argument(help="Default: CURRENT.")] = None,
    bundle_dir: BundleDir = None,
) -> None:
    """Validate a bundle fully (checksums, dims, a dummy run) and print its manifest."""
    from rich.console import Console

    from inference.bundle import BundleError
    from inference.onnx_session import LoadedBundle

    console = Console()
    try:
        bundle = LoadedBundle.load(_dir(ctx, bundle_dir), version, provider="cpu")
    except BundleError as exc:
        console.print(f"[red]invalid bundle: {exc}")
        raise typer.Exit(1) from None
    console.print_json(json.dumps(bundle.manifest.to_dict()))
    console.print(f"[green]bundle {bundle.version} is valid")


@models_app.command("rollback")
def rollback_command(
    ctx: typer.Context,
    to: Annotated[
        str | None, typer.Option(help="Version to serve; default: the one before CURRENT.")
    ] = None,
    bundle_dir: BundleDir = None,
) -> None:
    """Point CURRENT at an earlier bundle, after validating it."""
    from rich.console import Console

    from inference.bundle import BundleError, list_versions, read_current, set_current
    from inference.onnx_session import LoadedBundle

    console = Console()
    root = _dir(ctx, bundle_dir)
    target = to
    if target is None:
        versions = list_versions(root)
        current = read_current(root)
        older = [v for v in versions if current is None or v < current]
        if not older:
            console.print(f"[red]no bundle older than {current} in {root}")
            raise typer.Exit(1)
        target = older[-1]
    try:
        LoadedBundle.load(root, target, provider="cpu")
        set_current(root, target)
    except BundleError as exc:
        console.print(f"[red]not rolling back: {exc}")
        raise typer.Exit(1) from None
    console.print(f"CURRENT is now [bold]{target}[/bold]")


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
