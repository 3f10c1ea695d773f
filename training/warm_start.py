"""Start a retrain from a served model: its weights, matched to the new log by item id.

A bundle stores the torch weights of its retrieval model next to the ONNX graphs
(``WEIGHTS_FILE``), with the item id of each row of the ID-embedding table. A new run
copies every tensor whose shape still fits and, for the ID table, the rows of items
that both logs know; new items keep their fresh rows (their content path still
places them), and items the new log lacks are dropped.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import torch

from training.data import InteractionLog
from training.models.retrieval import RetrievalModel

WEIGHTS_FILE = "weights.pt"
ID_TABLE = "items.id_emb.weight"
_PER_LOG = ("id_index", "features")  # buffers that describe one log, never copied


@dataclass(frozen=True)
class WarmStart:
    """Weights of a trained model and the item id of each ID-table row (row 0: no ID)."""

    state: dict[str, torch.Tensor]
    id_items: list[str]


@dataclass(frozen=True)
class WarmReport:
    """What ``apply_warm_start`` copied: tensors whole, and ID rows matched by item id."""

    tensors: int
    skipped: list[str]
    id_rows: int


def warm_start_of(model: RetrievalModel, log: InteractionLog) -> WarmStart:
    """The warm start a later run can take from ``model`` trained on ``log``."""
    index = model.id_index.numpy()
    id_items = [""] * int(index.max(initial=0))
    for code in index.nonzero()[0]:
        id_items[int(index[code]) - 1] = log.item_ids[int(code)]
    state = {k: v.detach().clone() for k, v in model.state_dict().items() if k not in _PER_LOG}
    return WarmStart(state, id_items)


def weights_bytes(start: WarmStart) -> bytes:
    """``start`` serialised for a bundle's ``WEIGHTS_FILE``."""
    buf = io.BytesIO()
    torch.save({"state": start.state, "id_items": start.id_items}, buf)
    return buf.getvalue()


def read_warm_start(bundle: Path) -> WarmStart | None:
    """The warm start stored in a bundle directory, or None when it holds no weights."""
    path = bundle / WEIGHTS_FILE
    if not path.is_file():
        return None
    data = torch.load(path, map_location="cpu", weights_only=True)
    return WarmStart(dict(data["state"]), list(data["id_items"]))


@torch.no_grad()
def apply_warm_start(model: RetrievalModel, log: InteractionLog, start: WarmStart) -> WarmReport:
    """Copy ``start``'s weights into ``model`` (built for ``log``) where they fit."""
    own = model.state_dict()
    copied, skipped, rows = 0, [], 0
    for name, value in start.state.items():
        if name in _PER_LOG or name not in own:
            continue
        if name == ID_TABLE:
            rows = _copy_id_rows(model, log, value, start.id_items)
        elif own[name].shape == value.shape:
            own[name].copy_(value)
            copied += 1
        else:
            skipped.append(name)
    return WarmReport(copied, skipped, rows)


def _copy_id_rows(
    model: RetrievalModel, log: InteractionLog, old: torch.Tensor, id_items: list[str]
) -> int:
    """Copy the ID rows of items both models know; returns how many."""
    table = model.items.id_emb.weight
    if old.shape[1] != table.shape[1]:
        return 0
    old_row = {item: row + 1 for row, item in enumerate(id_items)}
    index = model.id_index.numpy()
    new_rows, old_rows = [], []
    for code in index.nonzero()[0]:
        prev = old_row.get(log.item_ids[int(code)])
        if prev is not None and prev < old.shape[0]:
            new_rows.append(int(index[code]))
            old_rows.append(prev)
    if new_rows:
        table[torch.as_tensor(new_rows)] = old[torch.as_tensor(old_rows)]
    return len(new_rows)
