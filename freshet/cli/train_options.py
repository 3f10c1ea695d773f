"""Model options shared by ``freshet train`` and ``freshet retrain``, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:  # training imports torch; the CLI must load without it
    from training.train import TrainConfig

BundleDir = Annotated[
    Path | None, typer.Option(envvar="FRESHET_BUNDLE_DIR", help="Where bundles live.")
]
Protocol = Annotated[str, typer.Option(envvar="FRESHET_TRAIN_PROTOCOL", help="time | loo")]
Epochs = Annotated[int, typer.Option(envvar="FRESHET_TRAIN_EPOCHS")]
Dim = Annotated[int, typer.Option(envvar="FRESHET_TRAIN_DIM")]
HistoryLen = Annotated[int, typer.Option(envvar="FRESHET_TRAIN_HISTORY_LEN")]
BatchSize = Annotated[int, typer.Option(envvar="FRESHET_TRAIN_BATCH_SIZE")]
Seed = Annotated[int, typer.Option(envvar="FRESHET_TRAIN_SEED")]
Threads = Annotated[int, typer.Option(envvar="FRESHET_TRAIN_THREADS")]
Objective = Annotated[
    str | None,
    typer.Option(
        envvar="FRESHET_TRAIN_OBJECTIVE",
        help="causal (the next item at every position of a history, ~10x the predictions "
        "a second, its own tuned temperature and negatives) | last (one prediction per "
        "history). Default: the trainer's default.",
    ),
]
WarmStart = Annotated[
    bool,
    typer.Option(
        envvar="FRESHET_TRAIN_WARM_START",
        help="Start from the weights of the CURRENT bundle (rows matched by item id).",
    ),
]
Ranker = Annotated[
    str | None,
    typer.Option(
        envvar="FRESHET_TRAIN_RANKER",
        help="Candidate ranker: off | auto (ship it only if it beats retrieval on "
        "held-out validation cases by 2% NDCG@10) | on (always ship it). Default: auto.",
    ),
]


def ranker_mode(ranker: str | None) -> str:
    """``--ranker`` checked against the pipeline's modes (None: its default)."""
    from training.pipeline import DEFAULT_RANKER, RANKER_MODES

    ranker = ranker or DEFAULT_RANKER
    if ranker not in RANKER_MODES:
        raise typer.BadParameter(f"--ranker must be one of {', '.join(RANKER_MODES)}")
    return ranker


def train_config(
    *,
    dim: int,
    history_len: int,
    epochs: int,
    batch_size: int,
    seed: int,
    threads: int,
    objective: str | None = None,
) -> TrainConfig:
    """The training configuration both commands build from these options.

    ``causal`` starts from ``training.train.CAUSAL`` (its tuned temperature, negatives and
    windows per step); ``last`` from ``TrainConfig(objective="last")``.
    """
    from dataclasses import replace

    from training.train import CAUSAL, OBJECTIVES, TrainConfig

    if objective is None:
        base = TrainConfig()
    elif objective == "causal":
        base = CAUSAL
    elif objective in OBJECTIVES:
        base = TrainConfig(objective=objective)
    else:
        raise typer.BadParameter(
            f"must be one of {', '.join(OBJECTIVES)}", param_hint="--objective"
        )
    return replace(
        base,
        dim=dim,
        history_len=history_len,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        threads=threads,
    )
