"""Kafka client options from one ``KafkaConfig``: bootstrap, TLS and SASL in one place.

kafka-python (the producer CLI, admin) and aiokafka (the async paths) spell a few
options differently; both are built here from the same fields so they cannot drift.
The password is unwrapped from its ``Secret`` only into the returned mapping, whose
``repr`` masks it, so logging the kwargs never shows it.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any, Final

SECURITY_PROTOCOLS: Final = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS: Final = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_SECRET_KEYS: Final = frozenset({"sasl_plain_password", "ssl_password"})

DEAD_LETTER_MAX_BYTES: Final = 4 * 1024 * 1024
"""Largest dead letter the worker sends, and the dead-letter topic's max.message.bytes.

A dead letter carries the refused value in base64 (4/3 of its size) plus a detail, so
a message near the broker's default 1 MB limit becomes a ~1.4 MB dead letter; with
the client's 1 MB default the send failed and the batch was retried forever."""


RECONNECT_BACKOFF_MAX_MS: Final = 1000
"""Cap on kafka-python's reconnect backoff (its default, 30 s, grows after ~7 s of
refusals, so a broker back after 10-15 s went unseen for up to 30 s); the Java
client's default cap is 1 s too."""

BOOTSTRAP_TIMEOUT_MS: Final = 5000
"""How long one kafka-python client tries to bootstrap before it raises; callers that
must outlast a late broker retry the whole attempt (``streams.kafka_io.kafka_wait``)."""


@dataclass(frozen=True)
class KafkaConfig:
    """Where the brokers are, how to reach them, and freshet's topic layout.

    Built from the ``FRESHET_KAFKA_*`` and ``FRESHET_TOPIC_*`` settings by
    ``freshet.wiring.kafka_of``; the error messages below name those variables.
    """

    bootstrap: str = "127.0.0.1:9092"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: str = field(default="", repr=False)
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    topic_prefix: str = "freshet"
    topic_partitions: int = 4
    # The worker's own clients, chosen by measurement for low latency and low broker CPU
    # (docs/configuration.md, "Kafka client settings").
    fetch_max_wait_ms: int = 1500
    fetch_min_bytes: int = 1
    max_poll_records: int = 0  # 0: no cap
    linger_ms: int = 0  # the list producer's
    consumer_on_loop: bool = True  # the worker's consumer on its event loop, not Faust's thread
    batch_delivery: bool = True  # batch agents fed a fetch's records at once, no Faust events
    commit_interval_s: float = 1.0  # the worker's offset commits (and one more on stop)


class ClientKwargs(dict[str, Any]):
    """Keyword arguments for a Kafka client; shows secrets as ``**********``."""

    def __repr__(self) -> str:
        shown = {k: "**********" if k in _SECRET_KEYS and v else v for k, v in self.items()}
        return f"ClientKwargs({shown!r})"

    __str__ = __repr__


def kafka_python_kwargs(config: KafkaConfig, **extra: Any) -> ClientKwargs:
    """kwargs for kafka-python's ``KafkaProducer``/``KafkaConsumer``/``KafkaAdminClient``.

    Args:
        config: Where and how to connect.
        **extra: Client-specific options (``acks``, ``linger_ms``, ...) added as given.

    Raises:
        ValueError: The security settings are inconsistent.
    """
    protocol = _protocol(config)
    kwargs = ClientKwargs(
        bootstrap_servers=_bootstrap(config),
        security_protocol=protocol,
        reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
        bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
    )
    if protocol in ("SSL", "SASL_SSL"):
        for name in ("cafile", "certfile", "keyfile"):
            path = getattr(config, f"ssl_{name}")
            if path:
                kwargs[f"ssl_{name}"] = path
        kwargs["ssl_check_hostname"] = True
    kwargs.update(_sasl(config, protocol))
    kwargs.update(extra)
    return kwargs


def aiokafka_kwargs(config: KafkaConfig, **extra: Any) -> ClientKwargs:
    """kwargs for aiokafka's ``AIOKafkaProducer``/``AIOKafkaConsumer``.

    aiokafka takes TLS as an ``ssl.SSLContext``; it is built here from the same
    CA, certificate and key files (reading them, so an unreadable file fails early).
    """
    protocol = _protocol(config)
    kwargs = ClientKwargs(bootstrap_servers=_bootstrap(config), security_protocol=protocol)
    if protocol in ("SSL", "SASL_SSL"):
        kwargs["ssl_context"] = ssl_context(config)
    kwargs.update(_sasl(config, protocol))
    kwargs.update(extra)
    return kwargs


def ssl_context(config: KafkaConfig) -> ssl.SSLContext:
    """A client TLS context: the CA file (else the system CAs) and an optional client cert."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=config.ssl_cafile or None)
    if config.ssl_certfile:
        context.load_cert_chain(config.ssl_certfile, keyfile=config.ssl_keyfile or None)
    elif config.ssl_keyfile:
        raise ValueError("FRESHET_KAFKA_SSL_KEYFILE is set without FRESHET_KAFKA_SSL_CERTFILE")
    return context


def _bootstrap(config: KafkaConfig) -> list[str]:
    servers = [s.strip() for s in config.bootstrap.split(",") if s.strip()]
    if not servers:
        raise ValueError("FRESHET_KAFKA_BOOTSTRAP is empty")
    return servers


def _protocol(config: KafkaConfig) -> str:
    protocol = config.security_protocol.strip().upper()
    if protocol not in SECURITY_PROTOCOLS:
        raise ValueError(
            f"FRESHET_KAFKA_SECURITY_PROTOCOL={protocol!r} is not one of {SECURITY_PROTOCOLS}"
        )
    return protocol


def _sasl(config: KafkaConfig, protocol: str) -> dict[str, Any]:
    if not protocol.startswith("SASL_"):
        return {}
    mechanism = (config.sasl_mechanism or "PLAIN").strip().upper()
    if mechanism not in SASL_MECHANISMS:
        raise ValueError(
            f"FRESHET_KAFKA_SASL_MECHANISM={mechanism!r} is not one of {SASL_MECHANISMS}"
        )
    if not config.sasl_username or not config.sasl_password:
        # Name the variables, never their values.
        raise ValueError(
            f"{protocol} needs FRESHET_KAFKA_SASL_USERNAME and FRESHET_KAFKA_SASL_PASSWORD"
        )
    return {
        "sasl_mechanism": mechanism,
        "sasl_plain_username": config.sasl_username,
        "sasl_plain_password": config.sasl_password,
    }
