"""How many native and Python calls one ``LiveScorer.score`` makes, by stage.

At a batch of one after an idle gap a call pays for each distinct code path it crosses
(``bench.score_breakdown --gap-ms``): the glue around the arithmetic is counted here, per
call, in the stages ``bench.score_breakdown`` times. Under ``sys.setprofile``: C
functions (numpy's, builtins, ORT's and faiss's bindings; ``c_call``), Python frames
(``call``, numpy's wrappers among them) and the compiled (numba) kernels, counted by
wrapping every dispatcher in ``inference`` and ``streams``; with ``--top`` the most
called of each. Counts, not times: the profiler slows every call.

    FRESHET_HOME=<own home> .venv/bin/python -m bench.score_calls --calls 50 --top 8
"""

from __future__ import annotations

import argparse
import functools
import gc
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from numba.core.registry import CPUDispatcher
from threadpoolctl import threadpool_limits

from bench.compute_bench import live_scorer, shop_arguments
from bench.score_breakdown import STAGES, touched_users
from bench.stream_bench import cached_bundle, simulate_shop
from freshet.settings import Settings
from inference.ann_index import set_search_threads
from inference.mmr_kernel import warm_up

Counts = defaultdict[str, Counter[str]]


def mark_stages(stack: list[str]) -> None:
    """Wrap each ``STAGES`` function so that ``stack[-1]`` names the stage running."""

    def marked(name: str, fn: Any) -> Any:
        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            stack.append(name)
            try:
                return fn(*args, **kwargs)
            finally:
                stack.pop()

        return call

    for name, owner, attr in STAGES:
        fn = owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr)
        setattr(owner, attr, marked(name, fn))


def count_kernels(stack: list[str], kernels: Counts) -> None:
    """Wrap every compiled kernel a project module holds, counting calls by stage."""

    def counted(name: str, fn: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            kernels[stack[-1]][name] += 1
            return fn(*args, **kwargs)

        return call

    for module_name, module in list(sys.modules.items()):
        if module_name.split(".")[0] not in ("inference", "streams"):
            continue
        for attr, value in list(vars(module).items()):
            if isinstance(value, CPUDispatcher):
                setattr(module, attr, counted(attr, value))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shop_arguments(parser)
    parser.add_argument("--calls", type=int, default=50, help="batch-of-one calls counted")
    parser.add_argument("--top", type=int, default=0, help="most called functions per stage")
    args = parser.parse_args()

    shop = simulate_shop(args.users, args.items, args.warm, args.events, args.seed)
    base = Settings.from_env({}, onnx_provider="cpu", onnx_threads=1)
    held, touched, now_ms = touched_users(shop, base)
    set_search_threads(base.ann_threads)
    warm_up()
    stack = ["outside the stages"]
    native: Counts = defaultdict(Counter)
    python: Counts = defaultdict(Counter)
    kernels: Counts = defaultdict(Counter)

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "c_call":
            native[stack[-1]][getattr(arg, "__qualname__", str(arg))] += 1
        elif event == "call":
            code = frame.f_code
            python[stack[-1]][f"{Path(code.co_filename).stem}.{code.co_name}"] += 1

    n = args.calls
    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(limits=1, user_api="blas"):
        bundle_dir = Path(tmp) / "bundles"
        version = cached_bundle(args, shop, bundle_dir)
        live = live_scorer(base, held, bundle_dir, version)
        live.score(touched[:1], now_ms)  # warm-up, uncounted
        gc.collect()
        gc.freeze()
        mark_stages(stack)
        count_kernels(stack, kernels)
        for user in touched[1 : n + 1]:
            sys.setprofile(profile)
            live.score([user], now_ms)
            sys.setprofile(None)
    # the wrappers' own frames and the profiler's switch are not the scorer's
    for counts in python.values():
        for name in [k for k in counts if k.startswith("score_calls.")]:
            del counts[name]
    for counts in native.values():
        counts.pop("setprofile", None)
        counts.pop("list.pop", None)  # the stage stack's
        counts.pop("list.append", None)  # the stage stack's and the scorer's alike

    def total(c: Counts) -> float:
        return sum(sum(v.values()) for v in c.values()) / n

    print("conditions:")
    print(
        f"  catalog {args.items:,} items, model {version}; {n} calls of LiveScorer.score, one"
        " user each, after one warm-up; sys.setprofile on (counts only, no times)"
    )
    print("figures (per call; C calls exclude list.append/pop, the stage marks' own):")
    print(
        f"  C calls {total(native):.1f}, Python frames {total(python):.1f},"
        f" compiled kernels {total(kernels):.1f}"
    )
    stages = sorted(
        set(native) | set(python) | set(kernels),
        key=lambda s: -sum(native[s].values()) - sum(python[s].values()),
    )
    print(f"  {'stage':44} {'C calls':>8} {'Python':>8} {'kernels':>8}")
    for s in stages:
        row = [sum(c[s].values()) / n for c in (native, python, kernels)]
        print(f"  {s:44} {row[0]:8.1f} {row[1]:8.1f} {row[2]:8.1f}")
        if args.top:
            for label, c in (("C", native[s]), ("Py", python[s]), ("kernels", kernels[s])):
                if c:
                    top = ", ".join(f"{k} {v / n:.1f}" for k, v in c.most_common(args.top))
                    print(f"      {label}: {top}")


if __name__ == "__main__":
    main()
