"""ONNX Runtime sessions for a model bundle: the only module that imports onnxruntime.

``onnxruntime-gpu`` lists ``CUDAExecutionProvider`` as available even on machines without
a GPU, so ``auto`` looks for a device node first and then checks that the session really
took the CUDA provider; otherwise it runs on CPU through the same code path.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from inference.bundle import (
    ITEM_CONTENT,
    RANKER,
    USER_ENCODER,
    BundleData,
    BundleError,
    Manifest,
    load_bundle_data,
    resolve_bundle,
)
from inference.item_features import hash_item_features

log = logging.getLogger(__name__)

PROVIDERS = ("auto", "cuda", "cpu")
_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"


def gpu_present() -> bool:
    """Whether an NVIDIA device node exists (the provider list alone proves nothing)."""
    return os.path.exists("/dev/nvidia0") or os.path.exists("/dev/dxg")


def create_session(path: Path, provider: str = "auto", threads: int = 1) -> ort.InferenceSession:
    """An inference session on CUDA when asked for (``cuda``) or usable (``auto``), else CPU.

    ``threads`` is the CPU provider's intra-op pool size, and its threads never spin
    while idle; 0 keeps onnxruntime's defaults (a thread per core, spinning between
    runs), which burn CPU that the event loop, Kafka and Redis need on a small machine
    (``bench/compute_bench.py`` measures both).

    Raises:
        BundleError: ``provider`` is unknown, the graph does not load, or ``cuda`` was
            demanded and the session could not use it.
    """
    if provider not in PROVIDERS:
        raise BundleError(f"onnx_provider must be one of {PROVIDERS}, got {provider!r}")
    options = _session_options(threads)
    want_cuda = provider == "cuda" or (
        provider == "auto" and gpu_present() and _CUDA in ort.get_available_providers()
    )
    try:
        if want_cuda:
            session = ort.InferenceSession(str(path), options, providers=[_CUDA, _CPU])
            if session.get_providers()[0] == _CUDA:
                return session
            if provider == "cuda":
                raise BundleError(f"onnx_provider=cuda but CUDA could not run {path.name}")
            log.warning("CUDA provider did not load for %s; using CPU", path.name)
        return ort.InferenceSession(str(path), options, providers=[_CPU])
    except BundleError:
        raise
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise BundleError(f"{path.name} does not load in onnxruntime: {exc}") from None


def _session_options(threads: int) -> ort.SessionOptions:
    """Quiet logs; ``threads`` intra-op threads that never spin (0: onnxruntime's defaults)."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads > 0:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


def batch_of_one_session(
    path: Path, served: ort.InferenceSession, threads: int = 1
) -> ort.InferenceSession:
    """A CPU session of the graph at ``path`` for batches of one, or ``served`` itself.

    The graph's symbolic batch dimension is fixed to 1, so onnxruntime folds the
    shape arithmetic the export leaves in (``Shape``, ``Gather``, ``Unsqueeze``,
    ``Concat``... around each attention block): the 100k shop's encoder runs 84
    kernels instead of 123. ``MatMulAddFusion`` stays off: with static shapes it turns
    each ``MatMul`` and ``Add`` into a reshaped ``Gemm``, a different kernel, where the
    float kernels should stay the served session's. ``served`` is returned where the
    inputs name no batch dimension (fixed or unnamed) or the session does not build.
    """
    names = {inp.shape[0] if inp.shape else None for inp in served.get_inputs()}
    if not names or not all(isinstance(name, str) for name in names):
        return served
    options = _session_options(threads)
    for name in names:
        options.add_free_dimension_override_by_name(name, 1)
    try:
        return ort.InferenceSession(
            str(path), options, providers=[_CPU], disabled_optimizers=["MatMulAddFusion"]
        )
    except Exception as exc:  # onnxruntime raises its own untyped errors
        log.warning("%s: no batch-of-one session (%s); the served one runs", path.name, exc)
        return served


class LoadedBundle:
    """A validated bundle ready to serve: item matrix plus user-encoder and content graphs.

    All methods take and return whole batches (first axis ``B``).
    """

    def __init__(
        self, data: BundleData, provider: str = "auto", threads: int = 1, serving: bool = False
    ) -> None:
        self.data = data
        self._threads = threads
        self.manifest: Manifest = data.manifest
        self._encoder = create_session(data.path / USER_ENCODER, provider, threads)
        self._content = create_session(data.path / ITEM_CONTENT, provider, threads)
        self._ranker = (
            create_session(data.path / RANKER, provider, threads)
            if data.manifest.has_ranker
            else None
        )
        self.provider = self._encoder.get_providers()[0]
        # The user encoder for batches of one (``bound_encoder_of_one``), built with the
        # others where the bundle is loaded to be served (``serving``): a session build
        # holds the GIL for milliseconds at a time, which the bundle load pays already,
        # not the swap that binds it. Elsewhere (API, trainer, CLI) it is built only if
        # a bound run is asked for.
        self._encoder_of_one = (
            batch_of_one_session(data.path / USER_ENCODER, self._encoder, threads)
            if serving and self.provider == _CPU
            else None
        )
        self.row_of: dict[str, int] = {item: row for row, item in enumerate(data.item_ids)}
        self._self_check()
        log.info(
            "loaded bundle %s (%d items, dim %d) on %s",
            self.version,
            len(data.item_ids),
            self.dim,
            self.provider,
        )

    @classmethod
    def load(
        cls,
        bundle_dir: Path,
        version: str | None = None,
        provider: str = "auto",
        threads: int = 1,
        serving: bool = False,
    ) -> LoadedBundle:
        """Load ``version`` (default: the CURRENT one) from ``bundle_dir``; validates fully.
        ``serving``: the batch-of-one encoder session is built now (a worker's load)."""
        data = load_bundle_data(resolve_bundle(bundle_dir, version))
        return cls(data, provider, threads, serving)

    @property
    def version(self) -> str:
        return self.manifest.model_version

    @property
    def dim(self) -> int:
        return self.manifest.dim

    @property
    def history_len(self) -> int:
        return self.manifest.history_len

    @property
    def item_ids(self) -> list[str]:
        return self.data.item_ids

    @property
    def item_vectors(self) -> np.ndarray:
        return self.data.item_vectors

    @property
    def item_popularity(self) -> np.ndarray:
        return self.data.item_popularity

    def encode_users(
        self, item_vecs: np.ndarray, types: np.ndarray, gaps: np.ndarray, mask: np.ndarray
    ) -> np.ndarray:
        """User vectors (B, D) from histories (B, n, ...), oldest first, left-padded.

        Histories shorter than the bundle's ``history_len`` are padded on the left;
        longer ones keep their most recent ``history_len`` events.

        Args:
            item_vecs: (B, n, D) float32 item vectors (rows of ``item_vectors`` or
                ``embed_items`` outputs for cold items).
            types: (B, n) int64 indices into ``manifest.event_types``.
            gaps: (B, n) float32, ``log1p`` of seconds between each event and now.
            mask: (B, n) bool or 0/1, true on real events.
        """
        n = self.history_len
        vecs = np.asarray(item_vecs, dtype=np.float32)
        if vecs.ndim != 3 or vecs.shape[2] != self.dim:
            raise ValueError(f"item_vecs must be (B, n, {self.dim}), got {vecs.shape}")
        feeds: dict[str, np.ndarray] = {
            "item_vecs": vecs,
            "types": np.asarray(types, dtype=np.int64),
            "gaps": np.asarray(gaps, dtype=np.float32),
            "mask": np.asarray(mask, dtype=np.float32),
        }
        for name in ("types", "gaps", "mask"):
            if feeds[name].shape != vecs.shape[:2]:
                raise ValueError(f"{name} must be {vecs.shape[:2]}, got {feeds[name].shape}")
        length = vecs.shape[1]
        if length > n:
            feeds = {k: v[:, length - n :] for k, v in feeds.items()}
        elif length < n:
            feeds = {k: _left_pad(v, n) for k, v in feeds.items()}
        if vecs.shape[0] == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.asarray(self._encoder.run(["user_vec"], feeds)[0], dtype=np.float32)

    def bound_encoder_of_one(self) -> BoundRun | None:
        """A new bound batch-of-one run of the user encoder, for one caller to own.

        It runs in a session of its own with the batch fixed to one
        (``batch_of_one_session``; built here if the load did not build it). Where that
        session's bound run does not give the served session's plain-run bits on dummy
        users, the served session itself is bound (d47379f's run). None on a CUDA
        session or where neither holds; the caller then uses ``encode_users``.
        """
        if self.provider != _CPU:
            return None
        if self._encoder_of_one is None:
            path = self.data.path / USER_ENCODER
            self._encoder_of_one = batch_of_one_session(path, self._encoder, self._threads)
        n, d, served = self.history_len, self.dim, self._encoder
        bound = _bound_batch_of_one(served, n, d, self._encoder_of_one)
        if bound is None and self._encoder_of_one is not served:
            log.warning("user encoder: the batch-of-one session is refused; the served one binds")
            bound = _bound_batch_of_one(served, n, d)
        return bound

    def embed_items(self, feature_ids: np.ndarray) -> np.ndarray:
        """Content-only item vectors (B, D) from hashed feature rows (B, F) int64."""
        ids = np.asarray(feature_ids, dtype=np.int64)
        width = self.manifest.hashing.max_features
        if ids.ndim != 2 or ids.shape[1] != width:
            raise ValueError(f"feature_ids must be (B, {width}), got {ids.shape}")
        if ids.shape[0] == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        ids = np.clip(ids, 0, self.manifest.hashing.buckets - 1)
        return np.asarray(self._content.run(["item_vec"], {"feature_ids": ids})[0], np.float32)

    def embed_catalog(
        self,
        items: Sequence[tuple[Sequence[str], Mapping[str, str | int | float | bool], str]],
    ) -> np.ndarray:
        """Content-only vectors (B, D) of items given as ``(categories, attributes, text)``."""
        config = self.manifest.hashing
        rows = np.zeros((len(items), config.max_features), dtype=np.int64)
        for i, (cats, attrs, text) in enumerate(items):
            rows[i] = hash_item_features(cats, attrs, text, config)
        return self.embed_items(rows)

    def rank(self, features: np.ndarray) -> np.ndarray | None:
        """Ranker scores (B,) for feature rows (B, R), or None when the bundle has no ranker."""
        if self._ranker is None:
            return None
        feeds: dict[str, Any] = {"features": np.asarray(features, dtype=np.float32)}
        return np.asarray(self._ranker.run(["score"], feeds)[0], dtype=np.float32).reshape(-1)

    def _self_check(self) -> None:
        """Run each graph once on a dummy batch; refuse wrong dims and non-finite output."""
        rng = np.random.default_rng(0)
        b, n, d = 2, self.history_len, self.dim
        vecs = rng.normal(size=(b, n, d)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=2, keepdims=True)
        types = rng.integers(1, len(self.manifest.event_types), size=(b, n))
        gaps = rng.uniform(0, 12, size=(b, n)).astype(np.float32)
        mask = np.ones((b, n), dtype=np.float32)
        mask[1, : n // 2] = 0.0
        try:
            users = self.encode_users(vecs, types, gaps, mask)
            items = self.embed_items(
                rng.integers(
                    0, self.manifest.hashing.buckets, size=(b, self.manifest.hashing.max_features)
                )
            )
        except Exception as exc:
            raise BundleError(f"bundle {self.version} fails on a dummy batch: {exc}") from None
        for name, out in (("user encoder", users), ("item content", items)):
            if out.shape != (b, d):
                raise BundleError(
                    f"bundle {self.version}: {name} outputs {out.shape}, manifest dim {d}"
                )
            if not np.isfinite(out).all():
                raise BundleError(f"bundle {self.version}: {name} outputs NaN or inf")


class BoundRun:
    """One graph's run at a fixed batch size with its inputs and output bound once.

    A plain ``run`` wraps every input and the output in new ORT values and checks them
    in Python on each call; at a batch of one after an idle gap (10 ev/s) that per-call
    setup costs a fifth of the run. Here the caller writes the feeds into ``inputs``,
    arrays that ORT already holds, and ORT writes the output into an array of ours.
    Not thread-safe: one owner (the scorer, under its lock) uses it at a time.
    """

    def __init__(
        self, session: ort.InferenceSession, inputs: dict[str, np.ndarray], output: str
    ) -> None:
        self.inputs = inputs
        self.session = session
        binding = session.io_binding()
        for name, arr in inputs.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(arr))
        out_type = {o.name: o.type for o in session.get_outputs()}.get(output)
        if out_type != "tensor(float)":
            raise BundleError(f"{output} is {out_type}, not float32")
        self._out = np.zeros(_bound_output_shape(session, inputs, output), np.float32)
        binding.bind_ortvalue_output(output, ort.OrtValue.ortvalue_from_numpy(self._out))
        # The public wrapper's ``run_with_iobinding`` only forwards to these two; called
        # directly they skip a Python frame that costs tens of us cold.
        self._run = session._sess.run_with_iobinding
        self._binding = binding._iobinding

    def run(self) -> np.ndarray:
        """The output for what ``inputs`` hold now (a copy: the next run overwrites it)."""
        self._run(self._binding, None)
        return self._out.copy()


def _bound_output_shape(
    session: ort.InferenceSession, inputs: Mapping[str, np.ndarray], output: str
) -> tuple[int, ...]:
    """The output's shape for inputs of these shapes, from one plain run."""
    return tuple(np.shape(session.run([output], dict(inputs))[0]))


def _bound_batch_of_one(
    session: ort.InferenceSession,
    n: int,
    d: int,
    runner: ort.InferenceSession | None = None,
) -> BoundRun | None:
    """The user encoder's bound batch-of-one run on CPU, or None where it does not hold.

    The run is bound in ``runner`` (default: ``session``). It is kept only if dummy
    users (a full history and left-padded ones) get ``session``'s plain-run bits; a
    CUDA session keeps the plain run (its outputs would be copied back to a CPU value
    anyway).
    """
    runner = session if runner is None else runner
    if session.get_providers()[0] != _CPU or runner.get_providers()[0] != _CPU:
        return None
    rng = np.random.default_rng(1)
    users: list[dict[str, np.ndarray]] = []
    for known in (n, max(n // 2, 1), 1):
        mask = np.zeros((1, n), np.float32)
        mask[0, n - known :] = 1.0
        users.append(
            {
                "item_vecs": rng.normal(size=(1, n, d)).astype(np.float32) * mask[..., None],
                "types": rng.integers(0, 2, size=(1, n)).astype(np.int64),
                "gaps": rng.uniform(0, 12, size=(1, n)).astype(np.float32) * mask,
                "mask": mask,
            }
        )
    try:
        bound = BoundRun(runner, {k: np.zeros_like(v) for k, v in users[0].items()}, "user_vec")
        for feeds in users:
            for name, arr in feeds.items():
                np.copyto(bound.inputs[name], arr)
            got = bound.run()
            want = np.asarray(session.run(["user_vec"], feeds)[0], np.float32)
            if got.shape != want.shape or got.tobytes() != want.tobytes():
                log.warning("user encoder: the bound run differs from the plain run; plain runs")
                return None
    except Exception as exc:  # onnxruntime raises its own untyped errors
        log.warning("user encoder: no bound batch-of-one run (%s); plain runs", exc)
        return None
    return bound


def _left_pad(arr: np.ndarray, n: int) -> np.ndarray:
    pad = [(0, 0)] * arr.ndim
    pad[1] = (n - arr.shape[1], 0)
    return np.pad(arr, pad)
