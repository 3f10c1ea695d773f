"""Run the fault-injection tests and render their measured records as a markdown table.

    python -m bench.reliability_report                   # run tests/reliability, print table
    python -m bench.reliability_report --results DIR --no-run   # render earlier records

The tests write one JSON record per fault when ``FRESHET_RELIABILITY_REPORT`` names a
folder (``tests/reliability_harness.py``); this script sets it, runs them, and turns the
records into the table of ``docs/reliability.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPORT_ENV = "FRESHET_RELIABILITY_REPORT"

COLUMNS = (
    ("Fault", "fault"),
    ("Events in", "records_in"),
    ("Applied", "applied"),
    ("Expected", "expected_applied"),
    ("Dead-lettered", "dead_lettered"),
    ("Lost", "lost"),
    ("Applied twice", "applied_twice"),
    ("Users differing", "users_differing"),
    ("Recovery (s)", "recovery_s"),
)


def run_tests(results: Path, select: str | None) -> int:
    """Run ``tests/reliability`` with the report folder set; returns pytest's exit code."""
    env = dict(os.environ, **{REPORT_ENV: str(results)})
    cmd = [sys.executable, "-m", "pytest", "tests/reliability", "-q", "-p", "no:cacheprovider"]
    if select:
        cmd += ["-k", select]
    return subprocess.call(cmd, env=env)


def _cell(key: str, value: Any) -> str:
    if key == "recovery_s":
        values = [float(v) for v in value or []]
        if not values:
            return "-"
        if len(values) == 1:
            return f"{values[0]:.1f}"
        return f"{min(values):.1f}-{max(values):.1f} (mean {sum(values) / len(values):.1f})"
    return str(value)


def render(records: list[dict[str, Any]]) -> str:
    """The markdown table, one row per fault, then each fault's notes."""
    head = "| " + " | ".join(title for title, _ in COLUMNS) + " |"
    rule = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(COLUMNS))) + "|"
    rows = [
        "| " + " | ".join(_cell(key, rec.get(key, "")) for _, key in COLUMNS) + " |"
        for rec in records
    ]
    notes = [f"- `{rec['fault']}`: {rec.get('notes', '')}" for rec in records]
    return "\n".join([head, rule, *rows, "", *notes]) + "\n"


def load(results: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(results.glob("*.json"))]


def worker_conditions() -> str:
    """The group settings the test workers run with (their defaults), and whether the
    installed packages carry bytecode: without it every restart compiles its imports,
    which more than doubled a worker's start-up and so its recovery after a crash."""
    import importlib.util

    import faust

    from freshet.settings import Settings

    s = Settings()
    cached = Path(importlib.util.cache_from_source(faust.__file__)).exists()
    return (
        f"workers on default group settings (static membership {s.static_membership}, "
        f"session {s.session_timeout_s:g} s, heartbeat {s.heartbeat_interval_s:g} s); "
        f"site-packages bytecode {'compiled' if cached else 'NOT compiled'}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, help="folder for the JSON records")
    parser.add_argument("--no-run", action="store_true", help="only render existing records")
    parser.add_argument("-k", dest="select", help="pytest -k expression")
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    results = args.results or Path(tempfile.mkdtemp(prefix="freshet-reliability-"))
    results.mkdir(parents=True, exist_ok=True)
    code = 0 if args.no_run else run_tests(results, args.select)
    records = load(results)
    if not records:
        print(f"no records in {results}", file=sys.stderr)
        return code or 1
    conditions = (
        f"Conditions: {platform.node()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; {worker_conditions()}; records in {results}\n\n"
    )
    table = conditions + render(records)
    print(table)
    if args.out:
        args.out.write_text(table)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
