"""A self-signed certificate for 127.0.0.1, made with openssl, for TLS Redis in tests."""

from __future__ import annotations

import subprocess
from pathlib import Path


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """Write ``cert.pem`` (also the trusted CA) and ``key.pem`` into ``folder``; return both."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    args = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
    args += ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)]
    subprocess.run(["openssl", *args], check=True, capture_output=True)
    return cert, key
