"""ONNX Runtime against torch eager, per micro-batch, for the user encoder and the ranker.

Both run the same module: the bundle's user encoder (``UserEncoder`` at the training
defaults) and the candidate ranker (``CandidateRanker`` over ``feature_width(dim)``
columns, ``--candidates`` rows per user), exported by the bundle's own exporter
(``training.export.onnx_bytes``) and loaded by the serving path
(``inference.onnx_session.create_session``). Weights are random: the time depends on
the shapes, not the values, and the two outputs are checked against each other before
anything is timed.

A call is timed as the worker makes it: numpy in, numpy out, so on CUDA the copies to
and from the device are inside the figure. Each figure is the median of ``--repeats``
calls after warm-up calls; torch and ONNX Runtime alternate call by call, so a noisy
moment on the machine hits both.

    .venv/bin/python -m bench.onnx_vs_torch --batches 1,32,256 --threads 1
    .venv/bin/python -m bench.onnx_vs_torch --device cuda   # on a machine with a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from inference.onnx_session import create_session
from inference.ranker_features import INPUT_NAME, OUTPUT_NAME, feature_width
from training.data import TYPE_VOCAB
from training.export import PARITY_TOL, EncoderGraph, onnx_bytes
from training.models.ranker import CandidateRanker
from training.models.user_encoder import UserEncoder
from training.train import TrainConfig

Inputs = dict[str, np.ndarray]


def encoder_inputs(batch: int, n: int, dim: int, rng: np.random.Generator) -> Inputs:
    """A micro-batch of histories: some full, some short, one empty when ``batch`` > 2."""
    lengths = rng.integers(1, n + 1, size=batch)
    if batch > 2:
        lengths[-1] = 0
    mask = (np.arange(n)[None, :] >= n - lengths[:, None]).astype(np.float32)
    return {
        "item_vecs": (rng.normal(size=(batch, n, dim)) * mask[..., None]).astype(np.float32),
        "types": (rng.integers(1, len(TYPE_VOCAB), size=(batch, n)) * mask).astype(np.int64),
        "gaps": (rng.exponential(3.0, size=(batch, n)) * mask).astype(np.float32),
        "mask": mask,
    }


def ranker_inputs(batch: int, candidates: int, width: int, rng: np.random.Generator) -> Inputs:
    """``batch`` users' candidate rows, flattened as the ranker hook sends them."""
    return {INPUT_NAME: rng.normal(size=(batch * candidates, width)).astype(np.float32)}


def torch_call(module: torch.nn.Module, names: list[str], device: str) -> Callable[[Inputs], Any]:
    """numpy in, numpy out through ``module`` on ``device``, synchronised."""

    @torch.inference_mode()
    def call(inputs: Inputs) -> np.ndarray:
        args = [torch.from_numpy(inputs[name]).to(device) for name in names]
        out = module(*args)
        return out.cpu().numpy()  # .cpu() waits for the device

    return call


def onnx_call(session: ort.InferenceSession) -> Callable[[Inputs], Any]:
    def call(inputs: Inputs) -> np.ndarray:
        return np.asarray(session.run(None, inputs)[0])

    return call


def time_pair(
    a: Callable[[Inputs], Any], b: Callable[[Inputs], Any], inputs: Inputs, repeats: int
) -> tuple[float, float]:
    """Median ms of ``a`` and ``b`` on ``inputs``, interleaved call by call."""
    for _ in range(3):
        a(inputs)
        b(inputs)
    ta, tb = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a(inputs)
        t1 = time.perf_counter()
        b(inputs)
        t2 = time.perf_counter()
        ta.append((t1 - t0) * 1000)
        tb.append((t2 - t1) * 1000)
    return statistics.median(ta), statistics.median(tb)


def run(
    batches: list[int],
    *,
    device: str = "cpu",
    threads: int = 1,
    candidates: int = 200,
    repeats: int = 50,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One row per (model, batch): torch ms, ONNX Runtime ms, their ratio and parity."""
    torch.manual_seed(seed)
    torch.set_num_threads(max(1, threads))
    rng = np.random.default_rng(seed)
    cfg = TrainConfig()
    dim, n = cfg.dim, cfg.history_len
    encoder = EncoderGraph(
        UserEncoder(dim, n, len(TYPE_VOCAB), cfg.layers, cfg.heads, cfg.dropout)
    ).eval()
    width = feature_width(dim)
    ranker = CandidateRanker(width).eval()
    ranker.set_normalisation(rng.normal(size=(256, width)))
    enc_names = ["item_vecs", "types", "gaps", "mask"]
    provider = "cuda" if device == "cuda" else "cpu"
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        sample = encoder_inputs(2, n, dim, rng)
        enc_path = Path(tmp) / "user_encoder.onnx"
        enc_path.write_bytes(
            onnx_bytes(
                encoder,
                tuple(torch.from_numpy(sample[k]) for k in enc_names),
                enc_names,
                "user_vec",
            )
        )
        rank_path = Path(tmp) / "ranker.onnx"
        rank_path.write_bytes(
            onnx_bytes(ranker, (torch.zeros(2, width),), [INPUT_NAME], OUTPUT_NAME)
        )
        models = {
            "user_encoder": (
                encoder,
                enc_names,
                create_session(enc_path, provider, threads),
                lambda b: encoder_inputs(b, n, dim, rng),
            ),
            "ranker": (
                ranker,
                [INPUT_NAME],
                create_session(rank_path, provider, threads),
                lambda b: ranker_inputs(b, candidates, width, rng),
            ),
        }
        for name, (module, names, session, make) in models.items():
            module.to(device)
            t_call = torch_call(module, names, device)
            o_call = onnx_call(session)
            for b in batches:
                inputs = make(b)
                diff = float(np.max(np.abs(t_call(inputs) - o_call(inputs))))
                if not diff <= PARITY_TOL * 10:
                    raise SystemExit(f"{name} at batch {b}: torch and ONNX differ by {diff}")
                torch_ms, onnx_ms = time_pair(t_call, o_call, inputs, repeats)
                rows.append(
                    {
                        "model": name,
                        "batch_users": b,
                        "rows": int(next(iter(inputs.values())).shape[0]),
                        "torch_ms": round(torch_ms, 4),
                        "onnx_ms": round(onnx_ms, 4),
                        "torch_over_onnx": round(torch_ms / onnx_ms, 2),
                        "max_abs_diff": diff,
                        "onnx_provider": session.get_providers()[0],
                    }
                )
    return rows


def conditions(args: argparse.Namespace) -> dict[str, Any]:
    gpu = torch.cuda.get_device_name(0) if args.device == "cuda" else None
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "cores": os.cpu_count(),
        "device": args.device,
        "gpu": gpu,
        "threads": args.threads,
        "candidates_per_user": args.candidates,
        "repeats": args.repeats,
        "dim": TrainConfig().dim,
        "history_len": TrainConfig().history_len,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,32,256", help="users per micro-batch")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads and ONNX Runtime's (FRESHET_ONNX_THREADS; 1 serves)",
    )
    parser.add_argument("--candidates", type=int, default=200, help="ranker rows per user")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write conditions and rows as JSON here")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device")
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    cond = conditions(args)
    rows = run(
        batches,
        device=args.device,
        threads=args.threads,
        candidates=args.candidates,
        repeats=args.repeats,
        seed=args.seed,
    )
    print("conditions: " + ", ".join(f"{k} {v}" for k, v in cond.items()))
    print("median ms per call, numpy in and out; rows = encoder histories or ranker rows")
    print(
        f"{'model':<13} {'users':>6} {'rows':>7} {'torch':>9} {'onnx':>9} {'torch/onnx':>11}"
        f"  provider"
    )
    for r in rows:
        print(
            f"{r['model']:<13} {r['batch_users']:>6} {r['rows']:>7} {r['torch_ms']:>9.3f}"
            f" {r['onnx_ms']:>9.3f} {r['torch_over_onnx']:>11.2f}  {r['onnx_provider']}"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"conditions": cond, "rows": rows}, indent=2) + "\n")
        print(f"written: {args.out}")


if __name__ == "__main__":
    main()
