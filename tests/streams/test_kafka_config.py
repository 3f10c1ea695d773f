"""Kafka client kwargs from settings: both clients agree, and secrets never show."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from freshet.settings import Settings
from freshet.wiring import kafka_of
from streams.kafka_io.kafka_config import aiokafka_kwargs, kafka_python_kwargs, ssl_context

PASSWORD = "hunter2-very-secret"


def _sasl_settings(**changes: object) -> Settings:
    fields: dict[str, object] = {
        "kafka_bootstrap": "b1:9093, b2:9093",
        "kafka_security_protocol": "SASL_PLAINTEXT",
        "kafka_sasl_mechanism": "scram-sha-512",
        "kafka_sasl_username": "svc-freshet",
        "kafka_sasl_password": PASSWORD,
    }
    return Settings().with_(**(fields | changes))


def test_plaintext_is_just_bootstrap_plus_extras() -> None:
    settings = Settings().with_(kafka_bootstrap="127.0.0.1:9092")
    assert kafka_python_kwargs(kafka_of(settings), acks="all") == {
        "bootstrap_servers": ["127.0.0.1:9092"],
        "security_protocol": "PLAINTEXT",
        "reconnect_backoff_max_ms": 1000,  # capped: a broker back is seen within 1 s
        "bootstrap_timeout_ms": 5000,
        "acks": "all",
    }
    assert aiokafka_kwargs(kafka_of(settings)) == {
        "bootstrap_servers": ["127.0.0.1:9092"],
        "security_protocol": "PLAINTEXT",
    }


def test_sasl_fields_for_both_clients_with_password_hidden_in_repr() -> None:
    settings = _sasl_settings()
    for kwargs in (kafka_python_kwargs(kafka_of(settings)), aiokafka_kwargs(kafka_of(settings))):
        assert kwargs["bootstrap_servers"] == ["b1:9093", "b2:9093"]
        assert kwargs["security_protocol"] == "SASL_PLAINTEXT"
        assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
        assert kwargs["sasl_plain_username"] == "svc-freshet"
        assert kwargs["sasl_plain_password"] == PASSWORD
        for shown in (repr(kwargs), str(kwargs), f"{kwargs}", f"{kwargs!r}"):
            assert PASSWORD not in shown
            assert "svc-freshet" in shown
    assert PASSWORD not in repr(settings)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kafka_security_protocol": "TLS"}, "SECURITY_PROTOCOL"),
        ({"kafka_sasl_mechanism": "GSSAPI"}, "SASL_MECHANISM"),
        ({"kafka_sasl_username": ""}, "SASL_USERNAME"),
        ({"kafka_bootstrap": " , "}, "BOOTSTRAP"),
    ],
)
def test_inconsistent_settings_fail_without_leaking(changes: dict, message: str) -> None:
    settings = _sasl_settings(**changes)
    for build in (kafka_python_kwargs, aiokafka_kwargs):
        with pytest.raises(ValueError, match=message) as caught:
            build(kafka_of(settings))
        assert PASSWORD not in str(caught.value)


@pytest.fixture(scope="module")
def cert_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    # deploy/local/bootstrap.sh installs openssl; without it this test must fail, not skip.
    assert openssl is not None, "openssl is needed to make a test certificate"
    base = tmp_path_factory.mktemp("tls")
    cert, key = base / "client.pem", base / "client.key"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=freshet-test", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_ssl_files_pass_to_kafka_python_and_become_a_context_for_aiokafka(
    cert_files: tuple[Path, Path],
) -> None:
    cert, key = cert_files
    settings = _sasl_settings(
        kafka_security_protocol="SASL_SSL",
        kafka_ssl_cafile=str(cert),
        kafka_ssl_certfile=str(cert),
        kafka_ssl_keyfile=str(key),
    )
    sync = kafka_python_kwargs(kafka_of(settings))
    assert (sync["ssl_cafile"], sync["ssl_certfile"], sync["ssl_keyfile"]) == (
        str(cert),
        str(cert),
        str(key),
    )
    assert sync["ssl_check_hostname"] is True
    context = aiokafka_kwargs(kafka_of(settings))["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert any("freshet-test" in str(c.get("subject")) for c in context.get_ca_certs())
    assert "ssl_cafile" not in aiokafka_kwargs(kafka_of(settings))


def test_key_without_certificate_is_refused(cert_files: tuple[Path, Path]) -> None:
    settings = Settings().with_(kafka_security_protocol="SSL", kafka_ssl_keyfile=str(cert_files[1]))
    with pytest.raises(ValueError, match="CERTFILE"):
        ssl_context(kafka_of(settings))
