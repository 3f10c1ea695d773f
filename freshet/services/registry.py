"""Where the running local services say they listen: a small JSON file in the home dir."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import orjson


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Addresses of the local services started by ``freshet services up``."""

    kafka_bootstrap: str
    redis_url: str


def endpoints_file(home: Path) -> Path:
    return home / "services" / "endpoints.json"


def write_endpoints(home: Path, endpoints: Endpoints) -> None:
    path = endpoints_file(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(
        orjson.dumps(
            {"kafka_bootstrap": endpoints.kafka_bootstrap, "redis_url": endpoints.redis_url}
        )
    )
    tmp.replace(path)


def clear_endpoints(home: Path) -> None:
    endpoints_file(home).unlink(missing_ok=True)


def read_endpoints(home: Path) -> Endpoints | None:
    """The recorded endpoints, or None when no local services were started."""
    path = endpoints_file(home)
    try:
        obj = orjson.loads(path.read_bytes())
        return Endpoints(str(obj["kafka_bootstrap"]), str(obj["redis_url"]))
    except (FileNotFoundError, orjson.JSONDecodeError, KeyError, TypeError):
        return None
