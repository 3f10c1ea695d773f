"""Training loop of the retrieval model: seeded, early-stopped on validation NDCG@10."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from training.data import (
    TYPE_VOCAB,
    InteractionLog,
    Split,
    UserHistories,
    history_batch,
)
from training.evaluation.protocols import build_cases, evaluate
from training.models.retrieval import RetrievalModel, TorchScorer, id_index_of


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training run (all with working defaults).

    Attributes:
        dim: Embedding width of items and users.
        history_len: History positions ``N`` of the user encoder.
        layers, heads: Attention blocks and heads of the user encoder.
        dropout: Dropout in both towers.
        id_dropout: Probability of training an item vector from content alone.
        epochs: Most epochs; early stopping usually ends sooner.
        patience: Epochs without a better validation NDCG@10 before stopping.
        batch_size: Training examples per step.
        lr, weight_decay: AdamW settings.
        temperature: Softmax temperature on cosine scores.
        negatives: Uniform sampled negatives per step (sampled softmax).
        full_softmax_max_items: Catalogs up to this size use a full softmax.
        samples_per_epoch: Cap on training examples per epoch (None: all).
        valid_cases: Validation cases scored after each epoch.
        seed: Seeds numpy and torch.
        threads: torch intra-op threads.
    """

    dim: int = 64
    history_len: int = 20
    layers: int = 2
    heads: int = 2
    dropout: float = 0.1
    id_dropout: float = 0.3
    epochs: int = 10
    patience: int = 2
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 1e-4
    temperature: float = 0.1
    negatives: int = 1024
    full_softmax_max_items: int = 3000
    samples_per_epoch: int | None = None
    valid_cases: int = 3000
    seed: int = 0
    threads: int = 2


@dataclass
class EpochRecord:
    """What one epoch did."""

    epoch: int
    loss: float
    valid: dict[str, float]
    seconds: float


@dataclass
class TrainResult:
    """The best model found and how training went."""

    model: RetrievalModel
    config: TrainConfig
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    seconds: float = 0.0
    samples: int = 0

    def config_dict(self) -> dict[str, Any]:
        return asdict(self.config)


def train(
    log: InteractionLog, split: Split, config: TrainConfig = TrainConfig(), show: bool = True
) -> TrainResult:
    """Fit a retrieval model on ``split.train``; keep the epoch best on ``split.valid``."""
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    hist = UserHistories.of(log)
    id_index = id_index_of(log, split.train)
    model = RetrievalModel(
        id_index,
        log.item_features,
        log.hashing.buckets,
        config.dim,
        config.history_len,
        len(TYPE_VOCAB),
        config.layers,
        config.heads,
        config.dropout,
    )
    counts = np.bincount(log.items[split.train], minlength=log.n_items).astype(np.float64)
    log_pop = torch.as_tensor(np.log((counts + 0.5) / (counts.sum() + 0.5 * log.n_items)))
    log_pop = log_pop.to(torch.float32)
    full = log.n_items <= config.full_softmax_max_items
    valid_cases = build_cases(
        log, split, "valid", config.history_len, config.valid_cases, config.seed, hist
    )
    optim = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    samples = split.train
    per_epoch = min(config.samples_per_epoch or samples.shape[0], samples.shape[0])
    steps = max(1, math.ceil(per_epoch / config.batch_size))
    result = TrainResult(model=model, config=config)
    best_state: dict[str, Any] | None = None
    best = -1.0
    started = time.perf_counter()
    progress = Progress(
        TextColumn("[bold]epoch {task.fields[epoch]}"),
        BarColumn(),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not show,
        transient=False,
    )
    with progress:
        for epoch in range(1, config.epochs + 1):
            t0 = time.perf_counter()
            task = progress.add_task("train", total=steps, epoch=epoch, loss=float("nan"))
            order = rng.permutation(samples)[:per_epoch]
            model.train()
            total = 0.0
            for step in range(steps):
                batch = order[step * config.batch_size : (step + 1) * config.batch_size]
                hb = history_batch(log, hist, batch, config.history_len)
                negs = None if full else rng.integers(0, log.n_items, size=config.negatives)
                loss = model.loss(
                    hb, log.items[batch], log_pop, config.temperature, config.id_dropout, negs
                )
                optim.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
                optim.step()
                total += loss.item()
                progress.update(task, advance=1, loss=total / (step + 1))
            result.samples += per_epoch
            scores = evaluate(TorchScorer(model), valid_cases, log.popularity(split.train)).metrics
            record = EpochRecord(epoch, total / steps, scores, time.perf_counter() - t0)
            result.history.append(record)
            progress.console.print(
                f"epoch {epoch}: loss {record.loss:.4f}  valid NDCG@10 {scores['ndcg@10']:.4f}"
                f"  HR@10 {scores['hr@10']:.4f}  ({record.seconds:.1f}s)"
            ) if show else None
            if scores["ndcg@10"] > best:
                best, result.best_epoch = scores["ndcg@10"], epoch
                best_state = copy.deepcopy(model.state_dict())
            elif epoch - result.best_epoch >= config.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    result.seconds = time.perf_counter() - started
    return result
