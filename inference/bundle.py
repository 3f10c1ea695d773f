"""The model bundle on disk: manifest, validation, version listing and the CURRENT pointer.

A bundle is a directory ``<bundle_dir>/<version>/`` holding:

- ``user_encoder.onnx``: inputs ``item_vecs`` (B, N, D) float32, ``types`` (B, N) int64,
  ``gaps`` (B, N) float32, ``mask`` (B, N) float32; output ``user_vec`` (B, D), L2-normed.
  History runs oldest to newest with padding on the *left* (position N-1 is the most
  recent event); ``types`` index ``manifest.event_types`` (0 is padding); ``gaps`` are
  ``log1p(seconds between the event and now)``; ``mask`` is 1.0 on real events.
- ``item_content.onnx``: input ``feature_ids`` (B, F) int64 from ``hash_item_features``;
  output ``item_vec`` (B, D), L2-normed: the vector of an item known only by its content.
- ``item_vectors.npy``: float32 (M, D), L2-normalised rows, score = dot product.
- ``item_ids.json``: JSON list, row -> item id.
- ``item_popularity.npy``: float32 (M,), event-type-weighted interaction counts in the
  training window.
- ``ranker.onnx``: optional; input ``features`` (B, R) float32 rows laid out as
  ``manifest.ranker_layout`` names (``inference.ranker_features``), output ``score`` (B,).
- ``manifest.json``: everything else, including the sha256 of every file above.

``CURRENT`` in ``bundle_dir`` names the served version. Bundles are written under a
temporary name and renamed into place, and ``CURRENT`` is replaced by rename, so a reader
sees a whole bundle or none. This module is pure file handling: no onnxruntime, no torch.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

from inference.item_features import HashingConfig
from inference.ranker_features import LAYOUT as RANKER_LAYOUT
from schemas.events import EVENT_TYPES

FORMAT_VERSION: Final = 1
MANIFEST: Final = "manifest.json"
CURRENT: Final = "CURRENT"
USER_ENCODER: Final = "user_encoder.onnx"
ITEM_CONTENT: Final = "item_content.onnx"
RANKER: Final = "ranker.onnx"
ITEM_VECTORS: Final = "item_vectors.npy"
ITEM_IDS: Final = "item_ids.json"
ITEM_POPULARITY: Final = "item_popularity.npy"
REQUIRED_FILES: Final = (USER_ENCODER, ITEM_CONTENT, ITEM_VECTORS, ITEM_IDS, ITEM_POPULARITY)
PAD_TYPE: Final = "<pad>"
GAP_TRANSFORM: Final = "log1p_seconds"

_VERSION_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


class BundleError(Exception):
    """A bundle is missing, incomplete, corrupt or inconsistent; the message says which."""


@dataclass(frozen=True)
class Manifest:
    """What ``manifest.json`` says about a bundle.

    Attributes:
        format_version: Layout version of the bundle directory.
        model_version: The bundle's version (also its directory name).
        created_at: ISO-8601 UTC creation time.
        dim: Embedding width ``D`` of users and items.
        history_len: History length ``N`` the user encoder takes.
        event_types: Type vocabulary; index 0 is padding.
        item_count: Rows ``M`` of the item matrix.
        hashing: Feature hashing config for ``item_content.onnx``.
        files: sha256 hex digest of every file in the bundle but the manifest.
        gap_transform: How ``gaps`` are computed (``log1p_seconds``).
        items_normalized: Whether item and user vectors are L2-normalised.
        metrics: Offline evaluation results of this model.
        data_range: Time range and size of the data trained on.
        training: Hyperparameters and protocol of the run.
        ranker_layout: Feature layout ``ranker.onnx`` was trained on (None: no ranker).
    """

    format_version: int
    model_version: str
    created_at: str
    dim: int
    history_len: int
    event_types: tuple[str, ...]
    item_count: int
    hashing: HashingConfig
    files: dict[str, str]
    gap_transform: str = GAP_TRANSFORM
    items_normalized: bool = True
    metrics: dict[str, Any] = field(default_factory=dict)
    data_range: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    ranker_layout: str | None = None

    @property
    def has_ranker(self) -> bool:
        return RANKER in self.files

    def type_id(self, event_type: str) -> int:
        """Index of an event type in the encoder's vocabulary (0, padding, if unknown)."""
        try:
            return self.event_types.index(event_type)
        except ValueError:
            return 0

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written to ``manifest.json``."""
        return {
            "format_version": self.format_version,
            "model_version": self.model_version,
            "created_at": self.created_at,
            "dim": self.dim,
            "history_len": self.history_len,
            "event_types": list(self.event_types),
            "gap_transform": self.gap_transform,
            "item_count": self.item_count,
            "items_normalized": self.items_normalized,
            "feature_hashing": self.hashing.to_dict(),
            "files": dict(sorted(self.files.items())),
            "metrics": self.metrics,
            "data_range": self.data_range,
            "training": self.training,
            "ranker_layout": self.ranker_layout,
        }

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> Manifest:
        """Parse and check the JSON form; raises ``BundleError`` with the reason."""
        if not isinstance(obj, Mapping):
            raise BundleError("manifest.json is not a JSON object")
        version = obj.get("format_version")
        if version != FORMAT_VERSION:
            raise BundleError(
                f"manifest format_version {version!r} is not supported (this code reads "
                f"{FORMAT_VERSION})"
            )
        try:
            hashing = HashingConfig.from_dict(obj["feature_hashing"])
        except KeyError:
            raise BundleError("manifest has no feature_hashing section") from None
        except ValueError as exc:
            raise BundleError(f"manifest feature_hashing is not usable: {exc}") from None
        try:
            manifest = cls(
                format_version=int(obj["format_version"]),
                model_version=str(obj["model_version"]),
                created_at=str(obj["created_at"]),
                dim=int(obj["dim"]),
                history_len=int(obj["history_len"]),
                event_types=tuple(str(t) for t in obj["event_types"]),
                item_count=int(obj["item_count"]),
                hashing=hashing,
                files={str(k): str(v) for k, v in dict(obj["files"]).items()},
                gap_transform=str(obj.get("gap_transform", GAP_TRANSFORM)),
                items_normalized=bool(obj.get("items_normalized", True)),
                metrics=dict(obj.get("metrics") or {}),
                data_range=dict(obj.get("data_range") or {}),
                training=dict(obj.get("training") or {}),
                ranker_layout=None
                if obj.get("ranker_layout") is None
                else str(obj["ranker_layout"]),
            )
        except KeyError as exc:
            raise BundleError(f"manifest is missing field {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise BundleError(f"manifest has a field of the wrong type: {exc}") from None
        manifest.check()
        return manifest

    def check(self) -> None:
        """Raise ``BundleError`` unless the manifest's facts are consistent by themselves."""
        if _VERSION_RE.fullmatch(self.model_version) is None:
            raise BundleError(f"model_version {self.model_version!r} is not a valid name")
        if not 1 <= self.dim <= 4096:
            raise BundleError(f"dim {self.dim} outside 1..4096")
        if not 1 <= self.history_len <= 4096:
            raise BundleError(f"history_len {self.history_len} outside 1..4096")
        if self.item_count < 0:
            raise BundleError(f"item_count {self.item_count} is negative")
        if not self.event_types or self.event_types[0] != PAD_TYPE:
            raise BundleError(f"event_types must start with {PAD_TYPE!r}")
        unknown = set(self.event_types[1:]) - set(EVENT_TYPES)
        if unknown:
            raise BundleError(f"event_types has types the contract lacks: {sorted(unknown)}")
        if self.gap_transform != GAP_TRANSFORM:
            raise BundleError(f"gap_transform {self.gap_transform!r} is not {GAP_TRANSFORM!r}")
        missing = [name for name in REQUIRED_FILES if name not in self.files]
        if missing:
            raise BundleError(f"manifest lists no checksum for {', '.join(missing)}")
        if self.has_ranker and self.ranker_layout != RANKER_LAYOUT:
            raise BundleError(
                f"{RANKER} was trained on feature layout {self.ranker_layout!r}; this code "
                f"builds {RANKER_LAYOUT!r}"
            )


@dataclass(frozen=True)
class BundleData:
    """A validated bundle's manifest and arrays (the ONNX graphs stay on disk)."""

    path: Path
    manifest: Manifest
    item_ids: list[str]
    item_vectors: np.ndarray
    item_popularity: np.ndarray

    @property
    def version(self) -> str:
        return self.manifest.model_version


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(path: Path) -> Manifest:
    """Read and check ``<path>/manifest.json`` (no file checks)."""
    mpath = path / MANIFEST
    if not path.is_dir():
        raise BundleError(f"bundle {path} does not exist")
    if not mpath.is_file():
        raise BundleError(f"bundle {path} has no {MANIFEST} (incomplete bundle)")
    try:
        obj = json.loads(mpath.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{mpath} is not valid JSON: {exc}") from None
    manifest = Manifest.from_dict(obj)
    if manifest.model_version != path.name:
        raise BundleError(
            f"bundle directory {path.name!r} holds model_version {manifest.model_version!r}"
        )
    return manifest


def load_bundle_data(path: Path) -> BundleData:
    """Validate a bundle directory and load its arrays; raises ``BundleError``.

    Checks that every file is present with the sha256 the manifest lists, that the
    arrays have the manifest's dims, and that the item vectors are finite.
    """
    manifest = read_manifest(path)
    for name, expected in manifest.files.items():
        if "/" in name or name.startswith("."):
            raise BundleError(f"manifest lists a file outside the bundle: {name!r}")
        fpath = path / name
        if not fpath.is_file():
            raise BundleError(f"bundle {manifest.model_version} is missing {name}")
        actual = sha256_of(fpath)
        if actual != expected:
            raise BundleError(
                f"bundle {manifest.model_version}: {name} is corrupt (sha256 {actual[:12]}…, "
                f"manifest says {expected[:12]}…)"
            )
    # Memory-mapped: the pages are the file's (shared, evictable), not a private copy;
    # the online catalog copies the rows it keeps growable anyway.
    vectors = _load_npy(path / ITEM_VECTORS, mmap=True)
    if vectors.dtype != np.float32 or vectors.shape != (manifest.item_count, manifest.dim):
        raise BundleError(
            f"{ITEM_VECTORS} is {vectors.dtype} {vectors.shape}, manifest says float32 "
            f"({manifest.item_count}, {manifest.dim})"
        )
    if not np.isfinite(vectors).all():
        raise BundleError(f"{ITEM_VECTORS} holds NaN or infinite values")
    popularity = _load_npy(path / ITEM_POPULARITY)
    if popularity.shape != (manifest.item_count,) or not np.isfinite(popularity).all():
        raise BundleError(
            f"{ITEM_POPULARITY} has shape {popularity.shape} or non-finite values, expected "
            f"({manifest.item_count},) finite"
        )
    try:
        ids = json.loads((path / ITEM_IDS).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{ITEM_IDS} is not valid JSON: {exc}") from None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise BundleError(f"{ITEM_IDS} must be a JSON list of strings")
    if len(ids) != manifest.item_count:
        raise BundleError(f"{ITEM_IDS} has {len(ids)} ids, manifest says {manifest.item_count}")
    if len(set(ids)) != len(ids):
        raise BundleError(f"{ITEM_IDS} repeats an item id")
    return BundleData(path, manifest, ids, vectors, popularity.astype(np.float32, copy=False))


def _load_npy(path: Path, mmap: bool = False) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise BundleError(f"{path.name} is not a readable .npy array: {exc}") from None


# --- Versions and the CURRENT pointer ----------------------------------------------------


def list_versions(bundle_dir: Path) -> list[str]:
    """Bundle versions present in ``bundle_dir``, oldest first (names sort by time)."""
    if not bundle_dir.is_dir():
        return []
    return sorted(
        p.name
        for p in bundle_dir.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).is_file()
    )


def read_current(bundle_dir: Path) -> str | None:
    """The version ``CURRENT`` names, or None when there is none."""
    try:
        text = (bundle_dir / CURRENT).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return text or None


def resolve_bundle(bundle_dir: Path, version: str | None = None) -> Path:
    """The directory of ``version``, or of the CURRENT version when None."""
    chosen = version or read_current(bundle_dir)
    if chosen is None:
        raise BundleError(f"no CURRENT bundle in {bundle_dir}; train one with `freshet train`")
    if _VERSION_RE.fullmatch(chosen) is None:
        raise BundleError(f"{chosen!r} is not a valid bundle version")
    return bundle_dir / chosen


def fsync_dir(path: Path) -> None:
    """Flush a directory entry so a rename inside it survives a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def set_current(bundle_dir: Path, version: str) -> None:
    """Point ``CURRENT`` at an existing, valid bundle; atomic (write, fsync, rename)."""
    read_manifest(bundle_dir / version)
    tmp = bundle_dir / f".{CURRENT}.{secrets.token_hex(4)}.tmp"
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(version + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, bundle_dir / CURRENT)
    fsync_dir(bundle_dir)


def metric_summary(manifest: Manifest) -> str:
    """A short one-line view of a bundle's headline metric, for listings."""
    value = manifest.metrics.get("test", {}).get("ndcg@10")
    if isinstance(value, int | float) and math.isfinite(value):
        return f"test NDCG@10 {value:.4f}"
    return ""
