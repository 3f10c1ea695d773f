"""The folder layout is the architecture: who may import what, checked on the source.

Every module is parsed (nothing is imported), its ``import`` statements collected, and
each is checked against the layer rules of ``streams/__init__.py``: the pure layers
(``schemas``, ``inference``, ``training``, ``streams.core``) use no settings, no
environment and no Kafka, Redis or Faust client; the Kafka and Redis adapters do not
know each other; and only the ``freshet`` package starts the Faust runtime.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = ("faust", "mode", "kafka", "aiokafka", "redis")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path, module: str | None = None) -> set[str]:
    """Every module a file imports, absolute (relative imports resolved), at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    module = module or _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def reads_environment(path: Path) -> bool:
    """True when the source reads ``os.environ`` or calls ``os.getenv``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv", "environb"}:
            return True
        if isinstance(node, ast.Name) and node.id in {"environ", "getenv"}:
            return True
    return False


def _files(*packages: str) -> list[Path]:
    return sorted(p for pkg in packages for p in (ROOT / pkg).rglob("*.py"))


def _under(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


PURE = _files("schemas", "inference", "training", "streams/core")


def pure_violations(names: set[str], environment: bool) -> list[str]:
    found = sorted(n for n in names if _under(n, "freshet"))
    return found + (["os.environ"] if environment else [])


def core_violations(names: set[str]) -> list[str]:
    adapters = (*CLIENTS, "streams.kafka_io", "streams.redis_io", "streams.runtime")
    return sorted(n for n in names if _under(n, *adapters))


@pytest.mark.parametrize("path", PURE, ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_layers_take_configs_not_settings(path: Path) -> None:
    bad = pure_violations(imports_of(path), reads_environment(path))
    assert not bad, f"{path.name} uses {bad}: pass a small config from freshet/wiring.py"


@pytest.mark.parametrize("path", _files("streams/core"), ids=lambda p: p.name)
def test_core_uses_no_clients_and_no_adapters(path: Path) -> None:
    bad = core_violations(imports_of(path))
    assert not bad, f"streams/core/{path.name} imports {bad}"


@pytest.mark.parametrize("path", _files("streams/kafka_io"), ids=lambda p: p.name)
def test_kafka_adapters_do_not_know_redis(path: Path) -> None:
    names = imports_of(path)
    bad = sorted(n for n in names if _under(n, "redis", "streams.redis_io", "streams.runtime"))
    assert not bad, f"streams/kafka_io/{path.name} imports {bad}"


@pytest.mark.parametrize("path", _files("streams/redis_io"), ids=lambda p: p.name)
def test_redis_adapters_do_not_know_kafka(path: Path) -> None:
    others = ("kafka", "aiokafka", "faust", "streams.kafka_io", "streams.runtime")
    bad = sorted(n for n in imports_of(path) if _under(n, *others))
    assert not bad, f"streams/redis_io/{path.name} imports {bad}"


BELOW_RUNTIME = _files(
    "schemas", "inference", "training", "streams/core", "streams/kafka_io", "streams/redis_io"
)


@pytest.mark.parametrize("path", BELOW_RUNTIME, ids=lambda p: str(p.relative_to(ROOT)))
def test_only_freshet_starts_the_runtime(path: Path) -> None:
    bad = sorted(n for n in imports_of(path) if _under(n, "streams.runtime"))
    assert not bad, f"{path.name} imports the Faust runtime {bad}"


def test_the_checker_sees_a_planted_violation(tmp_path: Path) -> None:
    """The rules are not vacuous: a file that breaks each one is caught."""
    planted = tmp_path / "planted.py"
    planted.write_text(
        "import os\nfrom freshet.settings import Settings\nfrom ..redis_io import keyspace\n"
        "import redis.asyncio\nX = os.environ.get('A')\n",
        encoding="utf-8",
    )
    names = imports_of(planted, module="streams.core.planted")
    assert "streams.redis_io.keyspace" in names
    assert pure_violations(names, reads_environment(planted)) == [
        "freshet.settings",
        "freshet.settings.Settings",
        "os.environ",
    ]
    assert core_violations(names) == [
        "redis.asyncio",
        "streams.redis_io",
        "streams.redis_io.keyspace",
    ]
    clean = tmp_path / "clean.py"
    clean.write_text("import numpy as np\nfrom .state_rules import StateRules\n", encoding="utf-8")
    names = imports_of(clean, module="streams.core.clean")
    assert "streams.core.state_rules.StateRules" in names
    assert not pure_violations(names, reads_environment(clean)) and not core_violations(names)
