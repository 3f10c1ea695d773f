"""A real freshet stack for the browser tests: worker, API and headless Chromium.

The worker and ``freshet api`` run as subprocesses against the session's Kafka and
Redis; Chromium and chromedriver are Debian's (``deploy/local/bootstrap.sh`` installs
them) and Selenium is given the driver's path, so it never tries to download one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from freshet.services.ports import port_open
from freshet.settings import Settings

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def chrome() -> webdriver.Chrome:
    """Headless Chromium at a fixed size, driven through the system chromedriver."""
    binary = shutil.which("chromium") or CHROMIUM
    driver = shutil.which("chromedriver") or CHROMEDRIVER
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in (
        "--headless=new",
        "--no-sandbox",  # the suite may run as root in a container
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
        "--hide-scrollbars",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


class ApiProcess:
    """``freshet api`` on a given port, with the web view's settings."""

    def __init__(self, settings: Settings, port: int, log_path: Path, **env: str) -> None:
        full = {k: v for k, v in os.environ.items() if not k.startswith("FRESHET_")}
        full.update(
            {
                "FRESHET_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
                "FRESHET_REDIS_URL": settings.redis_url,
                "FRESHET_TOPIC_PREFIX": settings.topic_prefix,
                "FRESHET_TOPIC_PARTITIONS": str(settings.topic_partitions),
                "FRESHET_HOME": str(settings.home),
            }
        )
        full.update(env)
        self.log_path = log_path
        self.log = log_path.open("ab")
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "freshet.cli", "api", "--port", str(port)],
            env=full,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while not port_open(port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"freshet api did not start:\n{self.output()}")
            time.sleep(0.1)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
