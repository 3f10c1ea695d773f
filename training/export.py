"""Write a trained model as a bundle directory, atomically, and promote it to CURRENT.

The bundle is built in ``<bundle_dir>/.tmp-<version>-<random>/``, every file and the
directory are fsynced, and the directory is renamed to ``<bundle_dir>/<version>/``. It is
then loaded through ``inference`` (the serving path), checked against torch on random and
real inputs, and only then is ``CURRENT`` replaced (write, fsync, rename). A reader never
sees half a bundle, and a bundle that fails its checks never becomes current.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from inference.ann_store import prebuild_for_bundle
from inference.bundle import (
    FORMAT_VERSION,
    ITEM_CONTENT,
    ITEM_IDS,
    ITEM_POPULARITY,
    ITEM_VECTORS,
    MANIFEST,
    RANKER,
    USER_ENCODER,
    BundleError,
    Manifest,
    fsync_dir,
    set_current,
    sha256_of,
)
from inference.ranker_features import INPUT_NAME, LAYOUT, OUTPUT_NAME
from training.data import TYPE_VOCAB, InteractionLog, Split, UserHistories, history_batch
from training.models.item_tower import ContentOnly
from training.models.ranker import CandidateRanker
from training.models.retrieval import RetrievalModel

PARITY_TOL = 1e-4
OPSET = 17


class EncoderGraph(nn.Module):
    """The exported user-encoder graph: the bundle's four inputs to ``user_vec``."""

    def __init__(self, users: nn.Module) -> None:
        super().__init__()
        self.users = users

    def forward(
        self, item_vecs: torch.Tensor, types: torch.Tensor, gaps: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        return self.users(item_vecs, types, gaps, mask)


def new_version(now: datetime | None = None) -> str:
    """A version name that sorts by creation time, to the millisecond (UTC).

    >>> new_version(datetime(2025, 1, 1, 12, 0, 0, 123_456, tzinfo=UTC))[:-7]
    '20250101T120000123Z'
    >>> early = datetime(2025, 1, 1, 12, 0, 0, 1_000, tzinfo=UTC)
    >>> new_version(early) < new_version(early.replace(microsecond=2_000))  # same second
    True
    """
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%S}{now.microsecond // 1000:03d}Z-{secrets.token_hex(3)}"


def onnx_bytes(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    inputs: list[str],
    output: str,
) -> bytes:
    """Export ``module`` to ONNX with a dynamic batch axis on every input and the output."""
    module.eval()
    axes = {name: {0: "batch"} for name in [*inputs, output]}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of one needing onnxscript; it
        # is still the one that works with the dependencies we ship.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(Path(tmp) / "model.onnx"),
            input_names=inputs,
            output_names=[output],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
        return (Path(tmp) / "model.onnx").read_bytes()


def _write(path: Path, data: bytes) -> None:
    with path.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def export_bundle(
    model: RetrievalModel,
    log: InteractionLog,
    split: Split,
    bundle_dir: Path,
    metrics: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
    version: str | None = None,
    make_current: bool = True,
    extra_files: Mapping[str, bytes] | None = None,
    ranker: CandidateRanker | None = None,
) -> Path:
    """Write ``model`` as ``<bundle_dir>/<version>/`` and (by default) make it CURRENT.

    The item matrix holds every item not removed from the catalog; items without
    training events get their content-only vector. ``extra_files`` (a report, curves)
    are stored and checksummed with the rest; ``ranker`` is stored as ``ranker.onnx``
    with its feature layout named in the manifest. Returns the bundle's directory.

    Raises:
        BundleError: the written bundle does not load or disagrees with torch.
    """
    model.eval()
    version = version or new_version()
    bundle_dir.mkdir(parents=True, exist_ok=True)
    tmp = bundle_dir / f".tmp-{version}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        rows = np.flatnonzero(~log.item_removed)
        vectors = model.all_item_vectors()[rows].astype(np.float32)
        n, d = model.history_len, model.dim
        f = log.hashing.max_features
        files: dict[str, bytes] = {
            USER_ENCODER: onnx_bytes(
                EncoderGraph(model.users),
                (
                    torch.zeros(2, n, d),
                    torch.zeros(2, n, dtype=torch.long),
                    torch.zeros(2, n),
                    torch.ones(2, n),
                ),
                ["item_vecs", "types", "gaps", "mask"],
                "user_vec",
            ),
            ITEM_CONTENT: onnx_bytes(
                ContentOnly(model.items),
                (torch.ones(2, f, dtype=torch.long),),
                ["feature_ids"],
                "item_vec",
            ),
            ITEM_VECTORS: _npy(vectors),
            ITEM_IDS: json.dumps([log.item_ids[i] for i in rows]).encode(),
            ITEM_POPULARITY: _npy(log.popularity()[rows].astype(np.float32)),
            **(extra_files or {}),
        }
        if ranker is not None:
            ranker.eval()
            files[RANKER] = onnx_bytes(
                ranker, (torch.zeros(2, ranker.width),), [INPUT_NAME], OUTPUT_NAME
            )
        for name, data in files.items():
            _write(tmp / name, data)
        manifest = Manifest(
            format_version=FORMAT_VERSION,
            model_version=version,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            dim=d,
            history_len=n,
            event_types=TYPE_VOCAB,
            item_count=int(rows.shape[0]),
            hashing=log.hashing,
            files={name: sha256_of(tmp / name) for name in files},
            metrics=dict(metrics or {}),
            data_range=data_range(log, split),
            training=dict(training or {}),
            ranker_layout=LAYOUT if ranker is not None else None,
        )
        _write(tmp / MANIFEST, json.dumps(manifest.to_dict(), indent=2).encode())
        fsync_dir(tmp)
        final = bundle_dir / version
        os.rename(tmp, final)
        fsync_dir(bundle_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    check_parity(model, log, final)
    if ranker is not None:
        check_ranker_parity(ranker, final)
    prebuild_for_bundle(final)  # workers read the ANN index instead of building it
    if make_current:
        set_current(bundle_dir, version)
    return final


def data_range(log: InteractionLog, split: Split) -> dict[str, Any]:
    """The time range and size of the data a model saw."""
    return {
        "first_ts": int(log.ts[0]) if log.n_events else None,
        "last_ts": int(log.ts[-1]) if log.n_events else None,
        "protocol": split.protocol,
        "valid_start_ts": split.valid_start_ts,
        "test_start_ts": split.test_start_ts,
        "events": log.n_events,
        "train_events": int(split.train.shape[0]),
        "users": log.n_users,
        "items": log.n_items,
    }


@torch.no_grad()
def check_parity(model: RetrievalModel, log: InteractionLog, path: Path, seed: int = 0) -> float:
    """Largest |torch - onnxruntime| over random and real inputs; raises past ``PARITY_TOL``."""
    from inference.bundle import load_bundle_data
    from inference.onnx_session import LoadedBundle

    bundle = LoadedBundle(load_bundle_data(path), provider="cpu")
    rng = np.random.default_rng(seed)
    n, d = model.history_len, model.dim
    worst = 0.0
    # Random inputs, some rows half or fully padded.
    vecs = rng.normal(size=(8, n, d)).astype(np.float32)
    types = rng.integers(0, len(TYPE_VOCAB), size=(8, n))
    gaps = rng.uniform(0, 15, size=(8, n)).astype(np.float32)
    mask = np.ones((8, n), dtype=np.float32)
    mask[1, : n // 2] = 0
    mask[2] = 0
    inputs = [(vecs, types, gaps, mask)]
    # Real inputs: histories of logged events on the exported item vectors.
    if log.n_events:
        hist = UserHistories.of(log)
        events = rng.choice(log.n_events, size=min(64, log.n_events), replace=False)
        hb = history_batch(log, hist, events, n)
        matrix = model.all_item_vectors()
        real = matrix[np.clip(hb.items, 0, None)] * hb.mask[:, :, None]
        inputs.append((real, hb.types, hb.gaps, hb.mask))
    for v, t, g, m in inputs:
        expect = model.users(
            torch.as_tensor(v), torch.as_tensor(t), torch.as_tensor(g), torch.as_tensor(m)
        ).numpy()
        worst = max(worst, float(np.abs(bundle.encode_users(v, t, g, m) - expect).max()))
    feats = [rng.integers(0, log.hashing.buckets, size=(8, log.hashing.max_features))]
    feats[0][:, log.hashing.max_features // 2 :] = 0
    if log.n_items:
        feats.append(log.item_features[: min(64, log.n_items)])
    for fid in feats:
        expect = ContentOnly(model.items)(torch.as_tensor(fid)).numpy()
        worst = max(worst, float(np.abs(bundle.embed_items(fid) - expect).max()))
    if worst > PARITY_TOL:
        raise BundleError(f"bundle {path.name}: onnxruntime differs from torch by {worst:.2e}")
    return worst


@torch.no_grad()
def check_ranker_parity(ranker: CandidateRanker, path: Path, seed: int = 0) -> float:
    """Largest |torch - onnxruntime| of the bundle's ranker; raises past ``PARITY_TOL``."""
    from inference.bundle import load_bundle_data
    from inference.onnx_session import LoadedBundle

    bundle = LoadedBundle(load_bundle_data(path), provider="cpu")
    rng = np.random.default_rng(seed)
    worst = 0.0
    mean, scale = ranker.mean.numpy(), ranker.scale.numpy()
    for b in (1, 7, 200):
        # Rows spread like the training rows (the model standardises by these).
        rows = (mean + scale * rng.normal(size=(b, ranker.width))).astype(np.float32)
        expect = ranker(torch.as_tensor(rows)).numpy()
        got = bundle.rank(rows)
        if got is None or got.shape != expect.shape:
            raise BundleError(
                f"bundle {path.name}: ranker gives {None if got is None else got.shape}"
            )
        worst = max(worst, float(np.abs(got - expect).max()))
    if worst > PARITY_TOL:
        raise BundleError(f"bundle {path.name}: ranker differs from torch by {worst:.2e}")
    return worst
