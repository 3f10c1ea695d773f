"""Run every benchmark in order and write JSON, a markdown summary and plots.

Each benchmark runs as its own subprocess (so one crash or timeout does not stop the
rest), its output kept under ``<out>/logs/``. Order: ingest, stream, ann, ranker,
ONNX Runtime against torch, Redis sizing, train_speed, prequential, offline evaluate
(``freshet train`` + ``freshet evaluate`` on the prequential's simulated data set),
trade-off. ``--quick`` shrinks every one of them to fit a few minutes on two cores. The
full mode runs each at the sizes it defaults to, and the stream bench as a sweep:
catalogs of 10k, 100k and 1M items, each with and without the ranker, each with its
latency-vs-throughput curve.

    .venv/bin/python -m bench.run_all --quick --out docs/benchmarks
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.prequential import HEADER, QUICK_SIM, markdown, plot_prequential, table_rows


@dataclass(frozen=True)
class Step:
    name: str
    args: list[str]
    quick_args: list[str]
    timeout_s: int
    quick_timeout_s: int
    full_only: bool = False


SWEEP_ITEMS = (10_000, 100_000, 1_000_000)
SWEEP_CURVE = "10,25,50,100,250,500,1000,2000"  # stops once p99 passes 100 ms


def stream_sweep(out: Path) -> list[Step]:
    """Full mode's stream runs: every catalog size, without and with the ranker."""
    py = [sys.executable, "-m"]
    runs = []
    for items in SWEEP_ITEMS:
        for ranker in ("off", "on"):
            name = f"stream_{items // 1000}k_ranker_{ranker}"
            args = [
                *py,
                "bench.stream_bench",
                f"--items={items}",
                "--events=20000",
                "--warm=20000",
                "--bundle",
                f"--ranker={ranker}",
                f"--curve={SWEEP_CURVE}",
                "--curve-events=1000",
                f"--out={out / 'stream' / f'{name}.json'}",
                f"--ready-timeout={1800 if items >= 1_000_000 else 900}",
            ]
            runs.append(Step(name, args, [], 5400, 0, full_only=True))
    return runs


def steps(out: Path, data: Path, bundles: Path) -> list[Step]:
    py = [sys.executable, "-m"]
    sim = [f"--users={QUICK_SIM['users']}", f"--items={QUICK_SIM['items']}"]
    cli = [*py, "freshet.cli"]
    ranker_quick = ["--events=20000", "--users=500", "--items=500", "--epochs=2", "--repeats=5"]
    tradeoff_full = [
        "--events=300000",
        "--users=20000",
        "--items=10000",
        "--epochs=8",
        "--jobs=2",
    ]
    return [
        Step(
            "ingest",
            [*py, "bench.ingest_bench"],
            [*py, "bench.ingest_bench", "--events=20000", "--users=2000", "--items=1000"],
            3600,
            240,
        ),
        Step(
            "stream",
            [*py, "bench.stream_bench", f"--out={out / 'stream_bench_run.json'}"],
            [
                *py,
                "bench.stream_bench",
                "--quick",
                "--warm=5000",
                "--rate=500",
                f"--out={out / 'stream_bench_quick.json'}",
            ],
            3600,
            300,
        ),
        *stream_sweep(out),
        Step(
            "ann",
            [*py, "bench.ann_bench", "--threads=2"],
            [*py, "bench.ann_bench", "--n=20000", "--repeats=3", "--threads=2"],
            1800,
            120,
        ),
        Step(
            "ranker",
            [*py, "bench.ranker_bench"],
            [*py, "bench.ranker_bench", *ranker_quick],
            3600,
            240,
        ),
        Step(
            "onnx_vs_torch",
            [*py, "bench.onnx_vs_torch", f"--out={out / 'onnx_vs_torch.json'}"],
            [*py, "bench.onnx_vs_torch", "--repeats=10", f"--out={out / 'onnx_vs_torch.json'}"],
            1800,
            180,
        ),
        Step(
            "sizing",
            [*py, "bench.sizing_bench"],
            [*py, "bench.sizing_bench", "--users=2000", "--items=1000", "--events=20000"],
            3600,
            240,
        ),
        Step(
            "train_speed",
            [*py, "bench.train_speed", "--budget-s=300"],
            [*py, "bench.train_speed", "--budget-s=30"],
            3600,
            240,
        ),
        Step(
            "prequential",
            [*py, "bench.prequential", f"--out={out}"],
            [*py, "bench.prequential", "--quick", f"--out={out}"],
            7200,
            420,
        ),
        Step(
            "evaluate",
            [
                *cli,
                "evaluate",
                str(data),
                f"--bundle-dir={bundles}",
                "--protocol=time",
                "--protocol=loo",
            ],
            [
                *cli,
                "evaluate",
                str(data),
                f"--bundle-dir={bundles}",
                "--protocol=time",
                "--protocol=loo",
                "--cases=2000",
            ],
            3600,
            300,
        ),
        Step(
            "tradeoff",
            [*py, "bench.tradeoff", f"--out={out}", *tradeoff_full],
            [*py, "bench.tradeoff", "--quick", f"--out={out}", *sim],
            10800,
            420,
        ),
    ]


def write_data(path: Path, quick: bool) -> None:
    """The prequential's simulated shop as JSONL, for ``freshet train``/``evaluate``."""
    from bench.prequential import FULL_SIM, sim_events
    from schemas.codec import encode

    size = QUICK_SIM if quick else FULL_SIM
    with path.open("wb") as f:
        for event in sim_events(size["users"], size["items"], size["events"], seed=0):
            f.write(encode(event) + b"\n")


def run_step(step: Step, quick: bool, logs: Path, env: dict[str, str]) -> dict[str, object]:
    cmd = step.quick_args if quick else step.args
    timeout = step.quick_timeout_s if quick else step.timeout_s
    log = logs / f"{step.name}.txt"
    t0 = time.perf_counter()
    print(f"== {step.name}: {' '.join(cmd[1:])}", flush=True)
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
        rc, text = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc = -1
        raw = (exc.stdout or b"") + (exc.stderr or b"")
        text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
        text += f"\n[run_all] timed out after {timeout} s\n"
    wall = time.perf_counter() - t0
    log.write_text(text)
    status = "ok" if rc == 0 else ("timeout" if rc == -1 else f"failed rc={rc}")
    print(f"   {status} in {wall:.0f} s (log: {log})", flush=True)
    return {"name": step.name, "status": status, "wall_s": round(wall, 1), "log": log.name}


def stream_json(out: Path, name: str, quick: bool) -> Path | None:
    """Where the stream step ``name`` wrote its JSON, or None for other steps."""
    if name == "stream":
        return out / ("stream_bench_quick.json" if quick else "stream_bench_run.json")
    if name.startswith("stream_"):
        return out / "stream" / f"{name}.json"
    return None


def top_rate(curve: list[dict[str, Any]], p99_ms: float) -> str:
    """The highest offered rate of a curve whose p99 event-to-publish is within ``p99_ms``."""
    ok = [
        p["offered_rate"] for p in curve if p["latency_ms_published_minus_event"]["p99"] <= p99_ms
    ]
    if not curve:
        return "not run"
    return f"{max(ok):,.0f}/s" if ok else f"none from {curve[0]['offered_rate']:,.0f}/s"


def stream_table(out: Path, results: list[dict[str, object]], quick: bool) -> str:
    """One row per stream run that succeeded: its conditions and headline figures."""
    head = [
        "run",
        "items",
        "model",
        "offered/s",
        "sustained/s",
        "saturated/s",
        "raw pipe/s",
        "ratio",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "lists/s sat.",
        "RSS MiB",
        "top rate p99 ≤ 100 ms",
    ]
    rows = []
    for r in results:
        path = stream_json(out, str(r["name"]), quick)
        if path is None or r["status"] != "ok" or not path.exists():
            continue
        rep = json.loads(path.read_text())
        c, f = rep["conditions"], rep["figures"]
        pw, sw, sb = f["paced_worker"], f["saturated_worker"], f["saturated_baseline"]
        lat = pw["latency_ms_published_minus_event"]
        model = (
            "model-free"
            if str(c["model"]).startswith("none")
            else ("bundle + ranker" if c.get("ranker") else "bundle")
        )
        rows.append(
            [
                str(r["name"]),
                f"{c['items']:,}",
                model,
                f"{pw['offered_rate']:,.0f}",
                f"{pw['sustained_events_per_s']:,.0f}",
                f"{sw['events_per_s']:,.0f}",
                f"{sb['events_per_s']:,.0f}",
                f"{sw['events_per_s'] / sb['events_per_s']:.3f}",
                f"{lat['p50']:,.0f}",
                f"{lat['p99']:,.0f}",
                f"{lat['p99.9']:,.0f}",
                f"{sw['lists_per_s']:,.0f}",
                f"{sw.get('worker_peak_rss_mib', 0):,.0f}",
                top_rate(f.get("curve") or [], 100.0),
            ]
        )
    return markdown(head, rows) if rows else ""


def summary_markdown(out: Path, results: list[dict[str, object]], quick: bool) -> str:
    lines = [
        f"# Benchmark run ({'QUICK' if quick else 'full'} mode)",
        "",
        f"Host: {platform.machine()}, {os.cpu_count()} cores visible, Python "
        f"{platform.python_version()}; ONNX provider cpu (no GPU on this host).",
        "",
        markdown(
            ["benchmark", "status", "wall s", "log"],
            [
                [str(r["name"]), str(r["status"]), str(r["wall_s"]), f"logs/{r['log']}"]
                for r in results
            ],
        ),
    ]
    streams = stream_table(out, results, quick)
    if streams:
        lines += [
            "",
            "## Streaming",
            "",
            "One worker; the raw pipe is aiokafka consume-and-produce of the same backlog in "
            "the same run (ratio = worker / pipe, saturated). Latency is event-to-publish at "
            "the offered rate. Each run's curve and full figures are in its JSON and log.",
            "",
            streams,
        ]
    pq = out / "prequential.json"
    if pq.exists():
        report = json.loads(pq.read_text())
        lines += [
            "",
            "## Prequential",
            "",
            report["note"],
            "",
            markdown(HEADER, table_rows(report["models"])),
        ]
    to = out / "tradeoff.md"
    if to.exists():
        lines += ["", "## Trade-off", "", to.read_text().strip(), "", "![trade-off](tradeoff.png)"]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    parser.add_argument("--only", nargs="*", help="run only these benchmarks")
    args = parser.parse_args(argv)
    out: Path = args.out
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    provider = os.environ.get("FRESHET_ONNX_PROVIDER", "cpu")
    env = {**os.environ, "FRESHET_ONNX_PROVIDER": provider, "COLUMNS": "200"}  # wide tables
    results: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="freshet-bench-") as tmp:
        data, bundles = Path(tmp) / "shop.jsonl", Path(tmp) / "bundles"
        wanted = set(args.only or [])
        for step in steps(out, data, bundles):
            if (wanted and step.name not in wanted) or (args.quick and step.full_only):
                continue
            if step.name == "evaluate":
                write_data(data, args.quick)
                epochs = ["--epochs=3", "--dim=32"] if args.quick else []
                train = [sys.executable, "-m", "freshet.cli", "train", str(data)]
                train += [f"--bundle-dir={bundles}", "--ranker=off", *epochs]
                results.append(
                    run_step(Step("train", train, train, 3600, 300), args.quick, logs, env)
                )
            results.append(run_step(step, args.quick, logs, env))
    previous = out / "run_all.json"
    if args.only and previous.exists():  # keep the other benchmarks' last results
        ran = {r["name"] for r in results}
        kept = [r for r in json.loads(previous.read_text())["benchmarks"] if r["name"] not in ran]
        rank = {s.name: float(i) for i, s in enumerate(steps(out, Path(), Path()))}
        rank["train"] = rank["evaluate"] - 0.5  # trains the bundle evaluate scores
        results = sorted(kept + results, key=lambda r: rank.get(str(r["name"]), -1.0))
    plot_prequential(out)
    conditions = {
        "mode": "quick" if args.quick else "full",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "onnx_provider": env["FRESHET_ONNX_PROVIDER"],
        "wall_s": round(sum(float(str(r["wall_s"])) for r in results), 1),
    }
    (out / "run_all.json").write_text(
        json.dumps({"conditions": conditions, "benchmarks": results}, indent=2) + "\n"
    )
    (out / "run_all.md").write_text(summary_markdown(out, results, args.quick))
    print(f"wrote {out}/run_all.json, run_all.md and plots in {conditions['wall_s']} s")
    return 0 if all(r["status"] == "ok" for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
