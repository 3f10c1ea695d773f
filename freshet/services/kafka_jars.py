"""Apache Kafka broker jars from Maven Central, resolved once into a cache folder.

There is no Kafka package in Debian and no Docker here, but the broker is published
on Maven Central: a pom whose only dependencies are ``kafka_2.13`` and a log4j binding
pulls the whole broker through its runtime scope. Resolution goes into a scratch
folder that is renamed into place and then marked complete, so an interrupted fetch
is simply redone, and a file lock keeps parallel processes from fetching twice.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from pathlib import Path

from freshet.services.errors import ServiceSetupError

KAFKA_VERSION = "3.9.1"
SCALA_VERSION = "2.13"
SLF4J_RELOAD4J_VERSION = "1.7.36"
RELOAD4J_VERSION = "1.2.25"

_COMPLETE = ".complete"

_POM = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.freshet.local</groupId>
  <artifactId>kafka-broker-jars</artifactId>
  <version>{kafka}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_{scala}</artifactId>
      <version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-reload4j</artifactId>
      <version>{slf4j}</version>
    </dependency>
    <dependency>
      <groupId>ch.qos.reload4j</groupId>
      <artifactId>reload4j</artifactId>
      <version>{reload4j}</version>
    </dependency>
  </dependencies>
</project>
"""


def kafka_cache_dir(home: Path, version: str = KAFKA_VERSION) -> Path:
    """``<home>/kafka/<version>``: the pom, the ``lib/`` folder and the marker live here."""
    return home / "kafka" / version


def kafka_jars_ready(home: Path, version: str = KAFKA_VERSION) -> bool:
    return (kafka_cache_dir(home, version) / _COMPLETE).exists()


def ensure_kafka_jars(home: Path, version: str = KAFKA_VERSION) -> Path:
    """The folder holding every broker jar, fetching them with Maven the first time."""
    root = kafka_cache_dir(home, version)
    lib = root / "lib"
    if (root / _COMPLETE).exists():
        return lib
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (root / _COMPLETE).exists():  # another process finished while we waited
            return lib
        _resolve(root, version)
    return lib


def _resolve(root: Path, version: str) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ServiceSetupError(
            "Maven (mvn) is needed once to fetch the Kafka broker jars: "
            "apt-get install maven default-jre-headless (or run deploy/local/bootstrap.sh)"
        )
    (root / "pom.xml").write_text(
        _POM.format(
            kafka=version,
            scala=SCALA_VERSION,
            slf4j=SLF4J_RELOAD4J_VERSION,
            reload4j=RELOAD4J_VERSION,
        )
    )
    scratch = root / "lib.partial"
    shutil.rmtree(scratch, ignore_errors=True)
    cmd = [
        mvn,
        "-q",
        "-B",
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={scratch.name}",
    ]
    result = subprocess.run(
        cmd, cwd=root, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
    )
    if result.returncode != 0 or not any(scratch.glob("kafka_*.jar")):
        out = (result.stdout + result.stderr).strip().splitlines()[-30:]
        raise ServiceSetupError(
            f"fetching Kafka {version} jars with Maven failed (exit {result.returncode}) "
            f"in {root}:\n" + "\n".join(out)
        )
    lib = root / "lib"
    shutil.rmtree(lib, ignore_errors=True)
    scratch.rename(lib)
    (root / _COMPLETE).write_text(version + "\n")
