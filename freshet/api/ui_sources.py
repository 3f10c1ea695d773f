"""Where the web view's data comes from: worker metrics, Redis, and the list and DLQ topics.

``OverviewHub`` scrapes every worker's ``/metrics`` once per ``refresh_s`` and fans the
result out to every open page, only while some page is open: ten open pages cost one
scrape, none cost nothing. ``watch_lists`` follows one user's partition of the list
topic for a user panel. The reads of a user, an item and the dead letters are one
request each, made when a person asks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from freshet.api.lists import user_partition
from freshet.settings import Settings
from freshet.ui.overview import OverviewHistory, Sample, merge, parse_metrics, reason_rows
from freshet.ui.views import decode_list_bytes, item_view, letter_view, list_holds
from freshet.wiring import kafka_of
from schemas.topics import Topics
from streams.redis_io.keyspace import Keyspace
from streams.redis_io.redis_state_store import RedisStateStore

log = logging.getLogger("freshet.api.ui")

SCRAPE_TIMEOUT_S = 2.0
SCAN_COUNT = 1_000
TRENDING_DEPTH = 100


def metrics_urls(settings: Settings) -> list[str]:
    return [u.strip() for u in settings.ui_metrics_urls.split(",") if u.strip()]


class OverviewHub:
    """One sampler for every subscriber; runs only while someone listens."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.urls = metrics_urls(settings)
        self.history = OverviewHistory()
        self._subscribers: set[asyncio.Queue[bytes]] = set()
        self._task: asyncio.Task[None] | None = None
        self._tally: Any = None
        self._reasons: list[dict[str, object]] = []
        self._dlq_note = ""
        self._created: dict[str, str | None] = {}
        self.scrapes = 0

    def snapshot(self, with_history: bool) -> bytes:
        points = self.history.points()
        body: dict[str, object] = {
            "point": points[-1].to_dict() if points else None,
            "dead_letters": self._reasons,
            "dead_letters_note": self._dlq_note,
            "version_since": self.history.version_since,
            "bundle_created": self._created,
            "metrics_urls": len(self.urls),
            "refresh_s": self.settings.ui_refresh_s,
        }
        if with_history:
            body["history"] = [p.to_dict() for p in points]
        return orjson.dumps(body)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[bytes]]:
        queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=8)
        self._subscribers.add(queue)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._tally is not None:
            await asyncio.to_thread(self._tally.close)
            self._tally = None

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while self._subscribers:
                started = time.monotonic()
                try:
                    await self.tick(session)
                except Exception:  # one bad tick must not end the overview for every page
                    log.exception("overview update failed")
                message = self.snapshot(with_history=False)
                for queue in list(self._subscribers):
                    if queue.full():  # a slow page gets the newest, not a backlog
                        queue.get_nowait()
                    queue.put_nowait(message)
                await asyncio.sleep(
                    max(0.1, self.settings.ui_refresh_s - (time.monotonic() - started))
                )

    async def tick(self, session: aiohttp.ClientSession) -> None:
        """One scrape of every worker and one read of the new dead letters."""
        samples = await asyncio.gather(*(self._scrape(session, u) for u in self.urls))
        point = self.history.add(merge(time.time(), samples))
        self.scrapes += 1
        for version in point.model_versions:
            if version not in self._created:
                self._created[version] = await asyncio.to_thread(self._bundle_created, version)
        await self._update_dead_letters()

    def _bundle_created(self, version: str) -> str | None:
        """When the served bundle was trained, if this host sees the bundle folder."""
        from inference.bundle import BundleError, read_manifest, resolve_bundle

        try:
            return read_manifest(resolve_bundle(self.settings.bundle_dir, version)).created_at
        except (BundleError, OSError):
            return None

    async def _scrape(self, session: aiohttp.ClientSession, url: str) -> Sample | None:
        try:
            async with session.get(url) as resp:
                if resp.status != 200:
                    return None
                return parse_metrics(await resp.text())
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.debug("scrape of a worker failed: %s", type(exc).__name__)
            return None

    async def _update_dead_letters(self) -> None:
        from kafka.errors import KafkaError

        from freshet.ops.dead_letter_io import DeadLetterTally

        try:
            if self._tally is None:
                self._tally = await asyncio.to_thread(DeadLetterTally, self.settings)
            counts = await asyncio.to_thread(self._tally.update)
        except KafkaError as exc:
            self._dlq_note = f"Kafka unavailable ({type(exc).__name__})"
            return
        self._reasons = reason_rows(counts.items())
        self._dlq_note = f"{self._tally.unreadable} unreadable" if self._tally.unreadable else ""


class StateReader:
    """Reads a user's state and an item's facts from the generation being served."""

    def __init__(self, settings: Settings, client: Any) -> None:
        self.settings = settings
        self.client = client

    async def _keyspace(self) -> Keyspace:
        from freshet.api.lists import generation_from

        raw = await self.client.get(Keyspace(self.settings.redis_namespace).generation_pointer)
        return Keyspace(self.settings.redis_namespace, generation_from(raw) or "g1")

    async def user(self, user_id: str) -> tuple[Any, bytes | None]:
        """The user's stored state and latest list (``None`` where absent)."""
        keys = await self._keyspace()
        store = RedisStateStore(self.client, keys, cluster=self.settings.redis_cluster)
        record = await store.user(user_partition(user_id, self.settings.topic_partitions), user_id)
        if record is None:
            return None, None
        return record.state, record.latest

    async def item(self, item_id: str) -> dict[str, object]:
        """Catalog record, interactions, decayed trend and its rank, and list holders.

        "New" is the recommender's own rule (``RecommendConfig.new_item_age_s``).
        """
        from inference.recommend import RecommendConfig

        keys = await self._keyspace()
        parts = range(self.settings.topic_partitions)
        store = RedisStateStore(
            self.client,
            keys,
            cluster=self.settings.redis_cluster,
            trending_half_life_s=self.settings.trending_half_life_s,
        )
        raw_record = await self.client.hget(keys.catalog, item_id)
        record = None if raw_record is None else orjson.loads(raw_record)
        counts = await asyncio.gather(*(self.client.hget(keys.counts(p), item_id) for p in parts))
        trending = await store.trending(parts, TRENDING_DEPTH)
        rank = next((n for n, (i, _) in enumerate(trending, start=1) if i == item_id), None)
        trend = next((s for i, s in trending if i == item_id), 0.0)
        holders, scanned, complete = await self._holders(keys, item_id)
        return item_view(
            item_id,
            record if isinstance(record, dict) else None,
            interactions=sum(int(c) for c in counts if c is not None),
            trend=trend,
            trend_rank=rank,
            now_ms=int(time.time() * 1000),
            new_item_age_s=RecommendConfig().new_item_age_s,
            holders=holders,
            users_scanned=scanned,
            scan_complete=complete,
        )

    async def _holders(self, keys: Keyspace, item_id: str) -> tuple[int | None, int, bool]:
        """How many users' current lists hold the item, over at most ``ui_scan_users``."""
        if self.settings.redis_cluster:
            return None, 0, False  # SCAN walks one node; a cluster needs a walk per master
        limit = self.settings.ui_scan_users
        pattern = f"{keys.namespace}:{keys.generation}:*:u:*"
        holders = scanned = 0
        cursor: int | str = 0
        while True:
            cursor, batch = await self.client.scan(cursor, match=pattern, count=SCAN_COUNT)
            batch = batch[: max(0, limit - scanned)]
            if batch:
                pipe = self.client.pipeline(transaction=False)
                for key in batch:
                    pipe.hget(key, "r")
                lists = await pipe.execute()
                scanned += len(batch)
                holders += sum(1 for raw in lists if raw is not None and list_holds(raw, item_id))
            if int(cursor) == 0:
                return holders, scanned, True
            if scanned >= limit:
                return holders, scanned, False


async def watch_lists(settings: Settings, user_id: str) -> AsyncIterator[dict[str, Any]]:
    """The user's lists as the workers publish them, from now on.

    Reads only the user's partition of the list topic, outside any consumer group.
    Raises ``TopicMissing`` when there is no list topic yet: assigning a missing topic
    would let the broker auto-create it, with its own partition count.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from schemas.topics import event_key, partition_for
    from streams.kafka_io.kafka_config import aiokafka_kwargs
    from streams.kafka_io.topic_reader import TopicMissing

    topic = Topics(settings.topic_prefix).recommendations
    consumer = AIOKafkaConsumer(
        **aiokafka_kwargs(
            kafka_of(settings),
            enable_auto_commit=False,
            group_id=None,
            client_id="freshet-ui-lists",
        )
    )
    await consumer.start()
    try:
        if topic not in await consumer.topics():  # all topics' metadata: creates nothing
            raise TopicMissing(f"topic {topic!r} does not exist")
        partitions = consumer.partitions_for_topic(topic) or {0}
        tp = TopicPartition(topic, partition_for(event_key(user_id), len(partitions)))
        consumer.assign([tp])
        await consumer.seek_to_end(tp)
        await consumer.position(tp)
        while True:
            got = await consumer.getmany(tp, timeout_ms=1000)
            for msg in got.get(tp, []):
                rec = decode_list_bytes(msg.value)
                if rec is not None and rec.get("user_id") == user_id:
                    yield rec
    finally:
        await consumer.stop()


def latest_letters(settings: Settings, n: int) -> dict[str, object]:
    """The last ``n`` dead letters (newest first) and the count per reason (blocking)."""
    from kafka.errors import KafkaError

    from freshet.ops.dead_letter_io import read_letters
    from freshet.ops.dead_letters import reason_counts
    from streams.kafka_io.topic_reader import TopicMissing

    try:
        read = read_letters(settings, client_id="freshet-ui-dlq")
    except TopicMissing:
        return {"letters": [], "reasons": [], "total": 0, "note": "no dead-letter topic yet"}
    except KafkaError as exc:
        return {"letters": [], "reasons": [], "total": 0, "note": type(exc).__name__}
    newest = deque(read.letters, maxlen=n)
    return {
        "letters": [letter_view(letter, p, off) for p, off, letter in reversed(newest)],
        "reasons": reason_rows(reason_counts(x for _, _, x in read.letters).items()),
        "total": len(read.letters),
        "note": f"{read.unreadable} unreadable" if read.unreadable else "",
    }
