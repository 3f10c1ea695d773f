"""One settings object, built once at the entry point from ``FRESHET_*`` variables.

Nothing reads the environment at import time: ``Settings.from_env()`` is called by the
command line (or a test) and the object is passed down. Secrets are wrapped in
``Secret`` so they never print in logs, errors or reprs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, get_type_hints


class Secret:
    """A string that never shows itself in ``repr``/``str``/logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def _default_home() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "freshet"


@dataclass(frozen=True)
class Settings:
    """Everything a freshet process needs to know about its surroundings.

    Each field ``name`` is read from ``FRESHET_<NAME>``; see ``docs/configuration.md``.
    """

    # --- Kafka -----------------------------------------------------------------------
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_security_protocol: str = "PLAINTEXT"  # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    kafka_sasl_mechanism: str = ""  # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
    kafka_sasl_username: str = ""
    kafka_sasl_password: Secret = field(default_factory=lambda: Secret(""))
    kafka_ssl_cafile: str = ""
    kafka_ssl_certfile: str = ""
    kafka_ssl_keyfile: str = ""
    topic_prefix: str = "freshet"
    topic_partitions: int = 4
    consumer_group: str = "freshet-worker"
    static_membership: bool = True  # rejoin after a crash without waiting out the session
    group_instance_id: str = ""  # "": <host>-<n>, the lowest n no live worker here holds
    session_timeout_s: float = 10.0
    heartbeat_interval_s: float = 1.0
    kafka_fetch_max_wait_ms: int = 1500
    kafka_fetch_min_bytes: int = 1
    kafka_max_poll_records: int = 0  # 0: no cap
    kafka_linger_ms: int = 0  # the worker's list producer
    kafka_consumer_on_loop: bool = True  # False: Faust's own consumer thread
    kafka_batch_delivery: bool = True  # False: a Faust event per record (the stream path)
    kafka_commit_interval_s: float = 1.0  # how often the worker commits what it acked

    # --- Redis -----------------------------------------------------------------------
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_password: Secret = field(default_factory=lambda: Secret(""))
    redis_username: str = ""
    redis_ssl_ca_certs: str = ""
    redis_cluster: bool = False
    redis_namespace: str = "fr"

    # --- Local services and files ----------------------------------------------------
    home: Path = field(default_factory=_default_home)
    bundle_dir: Path = field(default_factory=lambda: _default_home() / "bundles")

    # --- Worker ------------------------------------------------------------------------
    batch_max_events: int = 500
    batch_max_ms: int = 10
    batch_lanes: int = 1  # batch delivery: events processed in this many partition lanes
    debounce_ms: int = 200
    debounce_mode: str = "adaptive"
    debounce_behind_ms: int = 50
    history_len: int = 50
    seen_max: int = 500
    dedup_window: int = 256
    max_message_bytes: int = 64 * 1024
    min_event_ts_ms: int = 631_152_000_000
    max_future_ms: int = 24 * 3600 * 1000
    trending_half_life_s: float = 6 * 3600.0
    trending_sync_records: int = 500  # trending re-read once this many records were applied,
    trending_sync_s: float = 5.0  # or once any were and the last read is this old
    popularity_sync_s: float = 60.0  # item counts re-read at most this often
    ratings_as_interactions: bool = False  # a rating's value ignored (schemas.event_weights)
    list_size: int = 20
    cold_user_events: int = 2
    realtime: bool = True
    candidates: int = 200
    mmr_pool: int = 100
    mmr_lambda: float = 0.7
    longtail_share: float = 0.2
    exploration_slots: int = 2
    new_item_slots: int = 1
    trending_slots: int = 2
    covisit_weight: float = 1.0
    model_weight: float = 0.25
    popularity_weight: float = 0.0
    covisit_candidates: int = 50
    covisit_window: int = 10
    covisit_width: int = 200
    covisit_backward: float = 0.5  # reverse pairs' weight: 0 sequential, 1 co-occurrence
    covisit_flatness: float = 0.5  # distance weight 1 / d ** (1 - flatness)
    covisit_damping: float = 0.35  # candidate occurrence exponent: 0.5 cosine, 0 raw
    covisit_half_life_s: float = 500 * 86400.0  # pairs halve against newer ones (0: never)
    # Dampings compared on the stream's own next events, the best served ("": fixed).
    covisit_damping_choices: str = "0.25/0.35/0.5"
    covisit_vectors: bool = True  # items the bundle lacks: vectors from co-visitation
    onnx_provider: str = "auto"  # auto | cuda | cpu
    ann_threads: int = 1
    onnx_threads: int = 1
    blas_threads: int = 1
    metrics_port: int = 0  # 0: no Prometheus endpoint
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    api_token: Secret = field(default_factory=lambda: Secret(""))
    ui_metrics_urls: str = ""  # comma-separated worker /metrics URLs for the web view
    ui_refresh_s: float = 2.0
    ui_scan_users: int = 100_000
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``FRESHET_*`` variables, then apply explicit overrides."""
        env = os.environ if environ is None else environ
        hints = get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"FRESHET_{f.name.upper()}")
            if raw is not None:
                values[f.name] = _coerce(f.name, raw, hints[f.name])
        # The bundle folder lives in the home unless named: whether the home comes from
        # the environment or from an override (a test's or a bench's private home must
        # not read, or write, the user's default bundles).
        if "bundle_dir" not in values and "bundle_dir" not in overrides:
            home = overrides.get("home", values.get("home"))
            if home is not None:
                values["bundle_dir"] = Path(home) / "bundles"
        settings = cls(**values)
        if overrides:
            settings = settings.with_(**overrides)
        return settings

    def with_(self, **changes: Any) -> Settings:
        """A copy with some fields replaced (plain strings become ``Secret`` where due)."""
        hints = get_type_hints(type(self))
        fixed: dict[str, Any] = {
            k: Secret(v) if hints[k] is Secret and isinstance(v, str) else v
            for k, v in changes.items()
        }
        return replace(self, **fixed)

    def safe_dict(self) -> dict[str, str]:
        """All settings as strings, secrets masked: for logs and `freshet config`."""
        return {f.name: str(getattr(self, f.name)) for f in fields(self)}


def _coerce(name: str, raw: str, typ: Any) -> Any:
    try:
        if typ is bool:
            low = raw.strip().lower()
            if low in {"1", "true", "yes", "on"}:
                return True
            if low in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError(raw)
        if typ is int:
            return int(raw)
        if typ is float:
            return float(raw)
        if typ is Path:
            return Path(raw).expanduser()
        if typ is Secret:
            return Secret(raw)
        return raw
    except ValueError:
        # The value of a secret must not leak through the error, so say only the name.
        shown = "<hidden>" if typ is Secret else repr(raw)
        raise ValueError(f"FRESHET_{name.upper()}={shown} is not a valid {typ.__name__}") from None
