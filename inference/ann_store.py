"""The ANN index saved beside a bundle, so a worker reads it instead of building it.

Building the IVF index over a million items takes 45-96 s (k-means, then assigning
every item, then tuning ``nprobe``); reading the saved one takes about a second. A
saved index is named by a digest of exactly what it indexes: the vectors' bytes and
shape and the build parameters. Vectors that differ in one bit give another digest, so
a stale index is never found, and a file whose bytes do not match the checksum kept
beside it is rejected and rebuilt. Only IVF indexes are saved: below
``EXACT_BELOW`` items a build is a copy of the vectors.

Pure file handling and numpy; saving is best effort (a read-only bundle folder only
costs the rebuild on the next start).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from inference.ann_index import EXACT_BELOW, TRAIN_POINTS_PER_LIST, AnnIndex
from inference.bundle import ITEM_VECTORS

# Bump when what a saved index means changes (the build, the tuning, the file layout).
STORE_FORMAT: Final = 1
INDEX_DIR: Final = "ann-index"
KEEP: Final = 2  # saved indexes kept per folder, newest first (a bundle swap adds one)

log = logging.getLogger("freshet.ann")


def index_digest(
    vectors: npt.ArrayLike,
    seed: int = 0,
    exact_below: int = EXACT_BELOW,
    train_points_per_list: int = TRAIN_POINTS_PER_LIST,
) -> str:
    """sha256 of the vectors (rows are ids 0..n-1) and of every build parameter.

    >>> a = np.zeros((3, 2), np.float32)
    >>> b = a.copy(); b[2, 1] = 1e-30
    >>> index_digest(a) == index_digest(a.copy()), index_digest(a) == index_digest(b)
    (True, False)
    """
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    head = f"{STORE_FORMAT}|{v.shape}|{seed}|{exact_below}|{train_points_per_list}"
    digest = hashlib.sha256(head.encode())
    digest.update(v.data)
    return digest.hexdigest()


def build_or_load(
    vectors: npt.ArrayLike,
    folder: Path | None,
    seed: int = 0,
    exact_below: int = EXACT_BELOW,
    train_points_per_list: int = TRAIN_POINTS_PER_LIST,
) -> AnnIndex:
    """The index over ``vectors`` under ids ``0..n-1``: read from ``folder`` if saved
    there for these very vectors, else built (and saved there when it is an IVF index).
    """
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    ids = np.arange(v.shape[0], dtype=np.int64)
    if folder is None or v.shape[0] < exact_below:
        return AnnIndex.build(
            v, ids, seed, exact_below=exact_below, train_points_per_list=train_points_per_list
        )
    digest = index_digest(v, seed, exact_below, train_points_per_list)
    index = load_index(folder, digest, v.shape, seed, exact_below, train_points_per_list)
    if index is not None:
        return index
    index = AnnIndex.build(
        v, ids, seed, exact_below=exact_below, train_points_per_list=train_points_per_list
    )
    save_index(index, folder, digest)
    return index


def load_index(
    folder: Path,
    digest: str,
    shape: tuple[int, ...],
    seed: int = 0,
    exact_below: int = EXACT_BELOW,
    train_points_per_list: int = TRAIN_POINTS_PER_LIST,
) -> AnnIndex | None:
    """The index saved under ``digest``, or None when there is none or it is unusable."""
    data_path, meta_path = _paths(folder, digest)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        # Mapped, not read into a fresh array: faiss copies what it keeps, and a fresh
        # 270 MB array (1M items) cost a new worker up to 1 s of huge-page compaction.
        raw = np.memmap(data_path, dtype=np.uint8, mode="r")
    except (OSError, ValueError):
        return None
    reason = None
    if meta.get("digest") != digest or meta.get("format") != STORE_FORMAT:
        reason = "its metadata names other vectors"
    elif hashlib.sha256(raw.data).hexdigest() != meta.get("sha256"):
        reason = "its bytes do not match their checksum"
    if reason is None:
        try:
            index = AnnIndex.from_bytes(
                raw, seed, exact_below, train_points_per_list, meta.get("tuned_recall")
            )
        except (RuntimeError, ValueError) as exc:
            reason = f"faiss cannot read it ({exc})"
        else:
            if index.size == shape[0] and index.dim == shape[1]:
                log.info("ANN index %s… read from %s (%d items)", digest[:12], folder, index.size)
                return index
            reason = f"it holds {index.size} x {index.dim}, not {shape}"
    log.warning("ignoring the saved ANN index %s: %s", data_path, reason)
    return None


def save_index(index: AnnIndex, folder: Path, digest: str) -> Path | None:
    """Write ``index`` under ``digest`` in ``folder`` (atomically); None if it cannot."""
    if index.is_exact:
        return None
    data_path, meta_path = _paths(folder, digest)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        raw = index.to_bytes()
        meta = {
            "format": STORE_FORMAT,
            "digest": digest,
            "sha256": hashlib.sha256(raw.data).hexdigest(),
            "items": index.size,
            "dim": index.dim,
            "nlist": index.nlist,
            "nprobe": index.nprobe,
            "tuned_recall": index.tuned_recall,
        }
        _write_atomic(data_path, raw.data)
        _write_atomic(meta_path, json.dumps(meta, indent=2).encode())
        _prune(folder)
    except OSError as exc:
        log.warning("could not save the ANN index in %s: %s", folder, exc)
        return None
    return data_path


def _paths(folder: Path, digest: str) -> tuple[Path, Path]:
    return folder / f"{digest}.faiss", folder / f"{digest}.json"


def _write_atomic(path: Path, data: memoryview | bytes) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _prune(folder: Path) -> None:
    """Keep the ``KEEP`` newest saved indexes (metadata written last marks a whole one)."""
    metas = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for meta in metas[KEEP:]:
        meta.unlink(missing_ok=True)
        meta.with_suffix(".faiss").unlink(missing_ok=True)


def prebuild_for_bundle(bundle_path: Path) -> AnnIndex:
    """Build (or find) the index over a bundle's own item matrix and save it beside it.

    This is the index a worker starting on the bundle needs first, before any catalog
    item the bundle lacks: exporting calls it so that no worker pays the build.
    """
    vectors = np.load(bundle_path / ITEM_VECTORS, mmap_mode="r", allow_pickle=False)
    return build_or_load(vectors, bundle_path / INDEX_DIR)
