"""The web view in a real headless Chromium, against a real worker, Kafka, Redis and API.

One stack per module: a model-free worker (debounce off, metrics on) fed a small shop,
and ``freshet api`` with a bearer token and the worker's metrics URL. Each test signs
in through the page's form, as a person would. With ``FRESHET_UI_SCREENSHOTS=<dir>``
set, each view is saved there as a PNG (``docs/ui`` holds the committed ones).
"""

from __future__ import annotations

import base64
import os
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from browser_harness import ApiProcess, chrome
from redis import Redis
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.select import Select
from worker_harness import WorkerProcess, wait_for

from freshet.services.kafka_local import LocalKafka
from freshet.services.ports import free_port
from freshet.services.redis_local import LocalRedis
from freshet.settings import Settings
from freshet.wiring import kafka_of
from schemas.events import CatalogEvent, InteractionEvent
from schemas.topics import Topics
from streams.kafka_io.event_producer import EventProducer, ensure_topics
from streams.redis_io.keyspace import Keyspace

pytestmark = [pytest.mark.services]

TOKEN = "ui-test-token-5f1c2a"
HOSTILE = "<img src=x onerror=alert(1)>"
USERS = [f"u{n}" for n in range(20)]
ITEMS = [f"i{n}" for n in range(40)]


@dataclass
class Stack:
    settings: Settings
    api: ApiProcess
    worker: WorkerProcess
    driver: WebDriver
    redis: Redis
    shots: Path

    def send(self, events: list[InteractionEvent | CatalogEvent]) -> None:
        _send(self.settings, events)

    def send_raw(self, value: bytes, key: bytes) -> None:
        with EventProducer(kafka_of(self.settings)) as producer:
            producer.send_raw(value, key=key)
            producer.flush()

    def open(self, fragment: str) -> None:
        self.driver.get(f"{self.api.url}/ui#{fragment}")
        if self.driver.find_element(By.ID, "signin").is_displayed():
            self.driver.find_element(By.ID, "token").send_keys(TOKEN)
            self.driver.find_element(By.CSS_SELECTOR, "#signin-form button").click()

    def text(self, element_id: str) -> str:
        return str(self.driver.find_element(By.ID, element_id).text)

    def wait(self, check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
        def look() -> bool:
            try:
                return check()
            except StaleElementReferenceException:
                return False  # the page re-rendered between finding and reading: look again

        wait_for(look, timeout, what, self.worker)

    def shot(self, name: str) -> None:
        """Save the whole page, below the fold included."""
        height = self.driver.execute_script("return document.documentElement.scrollHeight")
        clip = {"x": 0, "y": 0, "width": 1400, "height": max(600, int(height)), "scale": 1}
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": True, "clip": clip},
        )
        (self.shots / f"{name}.png").write_bytes(base64.b64decode(shot["data"]))

    def stored_list(self, user: str) -> list[str]:
        return _stored_list(self.redis, self.settings, user)


def _send(settings: Settings, events: list[InteractionEvent | CatalogEvent]) -> None:
    with EventProducer(kafka_of(settings)) as producer:
        for ev in events:
            producer.send(ev)
        producer.flush()


def _stored_list(client: Redis, settings: Settings, user: str) -> list[str]:
    """The item ids of the user's list as the worker stored it in Redis."""
    from freshet.api.lists import user_partition

    keys = Keyspace(settings.redis_namespace)
    raw = client.hget(keys.user(user_partition(user, settings.topic_partitions), user), "r")
    return [] if raw is None else [it["item_id"] for it in orjson.loads(raw)["items"]]


def _number(text: str) -> float:
    try:
        return float(text.replace(",", "").split()[0])
    except (ValueError, IndexError):
        return -1.0


def _shop(now_ms: int) -> list[InteractionEvent | CatalogEvent]:
    events: list[InteractionEvent | CatalogEvent] = [
        CatalogEvent(
            f"c-{item}",
            "upsert",
            item,
            now_ms - 10 * 86_400_000,
            categories=(f"cat{n % 4}",),
            attributes={"brand": f"b{n % 3}"},
            text=f"Item {n}",
        )
        for n, item in enumerate(ITEMS)
    ]
    events.append(CatalogEvent("c-new", "upsert", "i-new", now_ms, categories=("cat1",)))
    for n in range(300):
        user, item = USERS[n % len(USERS)], ITEMS[(n * 7 + n // 20) % len(ITEMS)]
        events.append(InteractionEvent(f"seed-{n}", user, item, "view", now_ms - 60_000 + n))
    return events


@pytest.fixture(scope="module")
def stack(
    kafka: LocalKafka, redis_server: LocalRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("ui")
    prefix = f"ui-{uuid.uuid4().hex[:8]}"
    settings = Settings.from_env(
        {},
        kafka_bootstrap=kafka.bootstrap,
        redis_url=redis_server.url,
        topic_prefix=prefix,
        redis_namespace=prefix.replace("-", ""),
        topic_partitions=2,
        home=home,
    )
    ensure_topics(kafka_of(settings))
    metrics_port = free_port()
    worker = WorkerProcess(
        settings,
        home / "worker.log",
        FRESHET_METRICS_PORT=str(metrics_port),
        FRESHET_DEBOUNCE_MS="0",
        FRESHET_REDIS_NAMESPACE=settings.redis_namespace,
    )
    shots = Path(os.environ.get("FRESHET_UI_SCREENSHOTS") or home / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    api = driver = None
    client = Redis.from_url(settings.redis_url)
    try:
        _send(settings, _shop(int(time.time() * 1000)))
        wait_for(lambda: bool(_stored_list(client, settings, "u3")), 90, "the seed lists", worker)
        api = ApiProcess(
            settings,
            free_port(),
            home / "api.log",
            FRESHET_API_TOKEN=TOKEN,
            FRESHET_REDIS_NAMESPACE=settings.redis_namespace,
            FRESHET_UI_METRICS_URLS=f"http://127.0.0.1:{metrics_port}/metrics",
            FRESHET_UI_REFRESH_S="0.5",
        )
        driver = chrome()
        yield Stack(settings, api, worker, driver, client, shots)
    finally:
        if driver is not None:
            driver.quit()
        if api is not None:
            api.stop()
            assert TOKEN not in api.output()
        worker.stop()
        client.close()


def _get(url: str, token: str | None = None, post: bytes | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, data=post, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_the_page_holds_no_secret_and_its_data_needs_the_token(stack: Stack) -> None:
    status, page = _get(f"{stack.api.url}/ui")
    assert status == 200 and b"freshet" in page and TOKEN.encode() not in page
    for path in ("/ui/api/users/u3", "/ui/api/items/i1", "/ui/api/dlq", "/ui/api/overview"):
        assert _get(stack.api.url + path)[0] == 401, path
        assert _get(stack.api.url + path, "wrong-token")[0] == 401, path
    redrive = f"{stack.api.url}/ui/api/dlq/redrive"
    everything = orjson.dumps({"reasons": ["invalid_id"]})
    assert _get(redrive, None, everything)[0] == 401
    assert _get(redrive, "wrong-token", everything)[0] == 401
    for bad in ({}, {"transforms": ["ts-seconds-to-ms"]}, {"reasons": ["no_such_reason"]}):
        assert _get(redrive, TOKEN, orjson.dumps(bad))[0] == 400, bad
    status, body = _get(f"{stack.api.url}/ui/api/users/u3", TOKEN)
    assert status == 200 and orjson.loads(body)["user_id"] == "u3"
    stack.open("/overview")
    stack.wait(lambda: stack.text("ov-applied-total") != "–", "the overview's first figures")
    assert TOKEN not in stack.driver.page_source


def test_overview_counters_rise_while_events_flow(stack: Stack) -> None:
    stack.open("/overview")
    stack.wait(lambda: _number(stack.text("ov-applied-total")) > 0, "applied events shown")
    applied, published = (
        _number(stack.text(i)) for i in ("ov-applied-total", "ov-published-total")
    )
    now = int(time.time() * 1000)
    flow = [
        InteractionEvent(f"flow-{n}", USERS[n % 20], ITEMS[(n * 3) % 40], "click", now + n)
        for n in range(400)
    ]

    def produce() -> None:
        for start in range(0, len(flow), 40):
            stack.send(list(flow[start : start + 40]))
            time.sleep(0.2)

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        stack.wait(
            lambda: (
                _number(stack.text("ov-events-rate")) > 0
                and _number(stack.text("ov-applied-total")) >= applied + 200
            ),
            "applied events to rise on the page",
            timeout=40,
        )
    finally:
        producer.join()
    stack.wait(
        lambda: _number(stack.text("ov-published-total")) > published,
        "published lists to rise on the page",
    )
    assert _number(stack.text("ov-lists-rate")) >= 0
    assert stack.text("ov-p50").endswith("ms") and stack.text("ov-workers") == "1 / 1"


def test_user_list_changes_on_the_page_after_an_event(stack: Stack) -> None:
    user = "u3"
    stack.open(f"/user/{user}")
    stack.wait(lambda: stack.text("user-title") == user, "the user panel")
    rows = lambda: [  # noqa: E731
        r.get_attribute("data-item")
        for r in stack.driver.find_elements(By.CSS_SELECTOR, "#user-list tbody tr")
    ]
    before = rows()
    assert before and before == stack.stored_list(user)
    time.sleep(1.5)  # the page's list stream is open from now on
    bought = before[0]
    stack.send([InteractionEvent("buy-u3", user, bought, "purchase", int(time.time() * 1000))])
    stack.wait(lambda: "buy-u3" in stack.text("user-changes"), "the change feed to show the event")
    after = rows()
    assert after != before and bought not in after
    assert after == stack.stored_list(user)
    assert bought in stack.text("user-events")  # the purchase is the newest event shown
    stack.shot("user")


def test_hostile_ids_render_as_text(stack: Stack) -> None:
    raw = orjson.dumps(
        {
            "schema_version": 1,
            "event_id": "hostile-1",
            "user_id": HOSTILE,
            "item_id": "<script>alert(2)</script>",
            "type": "view",
            "ts": int(time.time() * 1000),
        }
    )
    stack.send_raw(raw, key=HOSTILE.encode())
    dlq = Topics(stack.settings.topic_prefix).dead_letter
    stack.open("/dlq")

    def shown() -> bool:
        stack.driver.find_element(By.ID, "dlq-refresh").click()
        time.sleep(0.5)
        return HOSTILE in stack.text("dlq-table")

    stack.wait(shown, f"the hostile dead letter on {dlq}")
    table = stack.text("dlq-table")
    assert "invalid_id" in table and "<script>alert(2)</script>" in table
    for fragment, out in (("/user/", "user-error"), ("/item/", "item-error")):
        stack.open(fragment + HOSTILE)
        stack.wait(lambda out=out: HOSTILE in stack.text(out), f"the id shown in {out}")
    # Typed into the search box as well: still text.
    stack.open("/user")
    box = stack.driver.find_element(By.ID, "user-input")
    box.clear()
    box.send_keys(HOSTILE)
    stack.driver.find_element(By.ID, "user-go").click()
    stack.wait(lambda: HOSTILE in stack.text("user-error"), "the typed id shown")
    assert stack.driver.find_elements(By.TAG_NAME, "img") == []
    assert stack.driver.find_elements(By.CSS_SELECTOR, "body script:not([src])") == []
    assert stack.driver.execute_script("return document.querySelectorAll('[onerror]').length") == 0


def test_item_view_and_a_dead_letter_fixed_and_re_driven_from_the_page(stack: Stack) -> None:
    stack.open("/item/i7")
    stack.wait(lambda: stack.text("item-title") == "i7", "the item panel")
    assert _number(stack.text("item-interactions")) > 0
    assert stack.text("item-new") == "no"  # first seen ten days ago
    holders = sum("i7" in stack.stored_list(u) for u in USERS)
    assert _number(stack.text("item-holders")) == holders
    assert "brand" in stack.text("item-record") and "cat3" in stack.text("item-record")
    stack.shot("item")
    stack.open("/item/i-new")
    stack.wait(lambda: stack.text("item-title") == "i-new", "the new item's panel")
    assert stack.text("item-new") == "yes"

    raw = orjson.dumps({"event_id": "fixme-1", "user_id": "u5", "item_id": "i2", "type": "view"})
    stack.send_raw(raw, key=b"u5")  # no ts, no schema_version: missing_field
    stack.open("/dlq")

    def row() -> object:
        stack.driver.find_element(By.ID, "dlq-refresh").click()
        time.sleep(0.5)
        for tr in stack.driver.find_elements(By.CSS_SELECTOR, "#dlq-table tbody tr"):
            if "fixme-1" in tr.text:
                return tr
        return None

    stack.wait(lambda: row() is not None, "the dead letter to fix")
    target = row()
    target.find_element(By.TAG_NAME, "button").click()  # type: ignore[attr-defined]
    area = stack.driver.find_element(By.CSS_SELECTOR, "textarea.fix")
    fixed = {
        "schema_version": 1,
        "event_id": "fixme-1",
        "user_id": "u5",
        "item_id": "i2",
        "type": "view",
        "ts": int(time.time() * 1000),
    }
    area.clear()
    area.send_keys(orjson.dumps(fixed).decode())
    stack.driver.find_element(By.XPATH, "//button[text()='Re-drive fixed event']").click()
    stack.wait(lambda: "1 delivered" in stack.text("dlq-result"), "the re-drive result")
    stack.shot("dead-letters")
    # Re-sending the originals of a reason, checked first: the original still lacks ts.
    reason = Select(stack.driver.find_element(By.ID, "dlq-reason"))
    reason.select_by_visible_text("missing_field")
    stack.driver.find_element(By.ID, "dlq-dry").click()
    stack.wait(
        lambda: (
            "Check: 1 selected, 0 valid; still refused" in stack.text("dlq-result")
            and "missing_field" in stack.text("dlq-result")
        ),
        "the dry run of a reason",
    )
    stack.open("/user/u5")

    def items_shown() -> list[str]:
        cells = stack.driver.find_elements(By.CSS_SELECTOR, "#user-events tbody td:nth-child(3)")
        return [c.text for c in cells]

    stack.wait(lambda: "i2" in items_shown(), "the re-driven event applied")

    # The overview counts the dead letters of this module by reason (its screenshot is
    # taken last, with the chart holding every point since the first test opened it).
    stack.open("/overview")
    stack.wait(
        lambda: "invalid_id" in stack.text("ov-dlq") and "missing_field" in stack.text("ov-dlq"),
        "dead letters by reason on the overview",
    )
    time.sleep(2.0)
    stack.shot("overview")
