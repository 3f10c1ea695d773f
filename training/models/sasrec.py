"""A SASRec-style baseline: item-ID embeddings, causal self-attention, BCE on one negative.

The comparison model of the leave-one-out evaluation, written after Kang & McAuley,
"Self-Attentive Sequential Recommendation" (ICDM 2018): the input and output item
embeddings are shared, each position predicts the next item, and the loss is binary
cross-entropy of the true next item against one uniformly sampled negative, as in the
paper. Training uses each user's last ``max_len + 1`` training events, early-stops on
validation NDCG@10 and may be capped in wall time, so that it can be given the same
budget as freshet's model.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.data import InteractionLog, Split, training_windows
from training.evaluation.protocols import EvalCases, build_cases, evaluate
from training.models.user_encoder import AttentionBlock


@dataclass(frozen=True)
class SASRecConfig:
    """The paper's settings for MovieLens, two blocks of width 64 by default."""

    dim: int = 64
    max_len: int = 200
    blocks: int = 2
    heads: int = 1
    dropout: float = 0.2
    lr: float = 1e-3
    batch_size: int = 128
    epochs: int = 200
    eval_every: int = 5
    patience: int = 3
    time_budget_s: float | None = None
    seed: int = 0
    threads: int = 2


class SASRec(nn.Module):
    """Item codes (B, N), -1 on left padding -> hidden state after each position (B, N, D)."""

    causal_bias: torch.Tensor

    def __init__(self, n_items: int, config: SASRecConfig) -> None:
        super().__init__()
        n, d = config.max_len, config.dim
        self.item_emb = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.pos_emb = nn.Embedding(n, d)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            AttentionBlock(d, config.heads, config.dropout) for _ in range(config.blocks)
        )
        self.norm = nn.LayerNorm(d)
        upper = torch.triu(torch.ones(n, n), diagonal=1) * -1e4
        self.register_buffer("causal_bias", upper.view(1, 1, n, n), persistent=False)
        self.dim = d
        # Small embeddings (Glorot, as the reference implementations use): with the
        # sqrt(d) input scale, unit-variance rows saturate the BCE from the first step.
        nn.init.xavier_normal_(self.item_emb.weight)
        nn.init.xavier_normal_(self.pos_emb.weight)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        mask = (items >= 0).to(torch.float32)
        x = self.item_emb(items + 1) * self.dim**0.5 + self.pos_emb.weight
        x = self.drop(x) * mask.unsqueeze(-1)
        bias = ((mask - 1.0) * 1e4).unsqueeze(1).unsqueeze(1) + self.causal_bias
        for block in self.blocks:
            x = block(x, bias) * mask.unsqueeze(-1)
        return self.norm(x)

    def item_matrix(self) -> torch.Tensor:
        """Output embeddings of item codes 0.. (I, D)."""
        return self.item_emb.weight[1:]


class SASRecScorer:
    """Scores cases by the last hidden state against every item (the protocol's Scorer)."""

    name = "sasrec"

    def __init__(self, model: SASRec, max_len: int) -> None:
        self.model = model
        self.max_len = max_len

    @torch.no_grad()
    def score(self, cases: EvalCases) -> np.ndarray:
        items = _fit(cases.history.items, self.max_len)
        self.model.eval()
        last = self.model(torch.as_tensor(items))[:, -1]
        return (last @ self.model.item_matrix().T).numpy()


@dataclass
class SASRecResult:
    """The best model on validation and how training went."""

    model: SASRec
    config: SASRecConfig
    valid_ndcg: list[tuple[int, float, float]] = field(default_factory=list)
    best_epoch: int = 0
    seconds: float = 0.0
    positions: int = 0

    def scorer(self) -> SASRecScorer:
        return SASRecScorer(self.model, self.config.max_len)


def train_sasrec(
    log: InteractionLog, split: Split, config: SASRecConfig = SASRecConfig()
) -> SASRecResult:
    """Fit on ``split.train``; keep the model best on validation NDCG@10 ``(epoch, s, ndcg)``."""
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    n = config.max_len
    windows = training_windows(log, split.train, n)
    # The paper trains on each user's most recent window only: the first cut per user.
    first = np.concatenate([[True], log.users[windows[1:, -1]] != log.users[windows[:-1, -1]]])
    seqs = log.items[np.clip(windows[first], 0, None)]
    seqs[windows[first] < 0] = -1
    model = SASRec(log.n_items, config)
    optim = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, 0.98))
    cases = build_cases(log, split, "valid", n, None, config.seed)
    popularity = log.popularity(split.train)
    result = SASRecResult(model, config)
    best, best_state, stale = -1.0, None, 0
    started = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        model.train()
        for s in range(0, seqs.shape[0], config.batch_size):
            batch = seqs[s : s + config.batch_size]
            inputs, targets = torch.as_tensor(batch[:, :-1]), torch.as_tensor(batch[:, 1:])
            valid = inputs >= 0
            negatives = torch.as_tensor(rng.integers(0, log.n_items, size=targets.shape))
            hidden = model(inputs)[valid]
            table = model.item_matrix()
            pos = (hidden * table[targets[valid]]).sum(-1)
            neg = (hidden * table[negatives[valid]]).sum(-1)
            loss = F.binary_cross_entropy_with_logits(
                torch.cat([pos, neg]), torch.cat([torch.ones_like(pos), torch.zeros_like(neg)])
            )
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            result.positions += int(valid.sum())
        seqs = seqs[rng.permutation(seqs.shape[0])]
        out_of_time = (
            config.time_budget_s is not None
            and time.perf_counter() - started >= config.time_budget_s
        )
        if epoch % config.eval_every and not out_of_time:
            continue
        ndcg = evaluate(result.scorer(), cases, popularity).metrics["ndcg@10"]
        result.valid_ndcg.append((epoch, time.perf_counter() - started, ndcg))
        if ndcg > best:
            best, result.best_epoch, stale = ndcg, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
        if out_of_time or stale >= config.patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    result.seconds = time.perf_counter() - started
    return result


def _fit(items: np.ndarray, n: int) -> np.ndarray:
    """The last ``n`` columns of left-padded item codes, padded with -1 when shorter."""
    if items.shape[1] >= n:
        return items[:, items.shape[1] - n :]
    return np.pad(items, ((0, 0), (n - items.shape[1], 0)), constant_values=-1)
