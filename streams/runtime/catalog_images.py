"""A worker's catalog image on local disk: read at the first bundle load, written when
caught up with the catalog log (``streams.core.catalog_image`` holds the format and
the rules; this shell only waits on the file, the log and the worker threads)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NamedTuple

from inference.ann_index import AnnIndex
from inference.item_catalog import ItemCatalog
from streams.core.catalog import CatalogSnapshot
from streams.core.catalog_image import (
    ImageParts,
    StoredRecords,
    finish,
    load_image,
    restore,
    save_image,
    usable,
)
from streams.core.live_catalog import bundle_index_folder

log = logging.getLogger("freshet.catalog")


class Restored(NamedTuple):
    """What a worker serves from after reading its image, and the log entry it is at."""

    catalog: ItemCatalog
    ann: AnnIndex | None
    records: StoredRecords
    cursor: str


class CatalogImages:
    """Reads and writes one worker's catalog image in ``folder``.

    Args:
        folder: The image's folder (one per Redis namespace).
        log_of: The catalog log, to check that it still holds an image's entry.
        every_s: Least time between two saves (a save at a million items costs a few
            seconds of a worker thread).
    """

    def __init__(self, folder: Path, log_of: CatalogSnapshot, every_s: float = 300.0) -> None:
        self.folder = folder
        self.log_of = log_of
        self.every_s = every_s
        self.saved: tuple[int, str] | None = None  # (id of the catalog, cursor) saved
        self.saved_at = float("-inf")  # monotonic
        self.task: asyncio.Task[None] | None = None

    async def read(self, bundle: Any, version: str) -> Restored | None:
        """The catalog, index and records of the image, if it was taken for ``version``
        and the log still holds its entry; else None (read the stored records)."""
        t0 = time.perf_counter()
        image = await asyncio.to_thread(load_image, self.folder)
        read_s = time.perf_counter() - t0
        if image is None:
            return None
        anchor = await self.log_of.log_entry(image.cursor)
        if not usable(image, version, anchor):
            log.info(
                "catalog image at log entry %s not used (bundle %s; the log has %s there)",
                image.cursor,
                image.bundle_version,
                anchor,
            )
            return None
        catalog, index, records = await asyncio.to_thread(
            restore, image, bundle, bundle_index_folder(bundle)
        )
        log.info(
            "catalog image read: %d rows at log entry %s (file %.2f s, all %.2f s)",
            catalog.size,
            image.cursor,
            read_s,
            time.perf_counter() - t0,
        )
        return Restored(catalog, index, records, image.cursor)

    def served(self, catalog: ItemCatalog, cursor: str) -> None:
        """The worker serves ``catalog`` at ``cursor`` as the image has it: no save due."""
        self.saved = (id(catalog), cursor)

    def due(self, catalog: ItemCatalog, cursor: str) -> bool:
        """Whether the served catalog moved since the last save, long enough ago."""
        if cursor == "0" or (self.task is not None and not self.task.done()):
            return False
        if self.saved == (id(catalog), cursor):
            return False
        return time.monotonic() - self.saved_at >= self.every_s

    def start_save(self, take: Callable[[], Awaitable[ImageParts | None]]) -> None:
        """Save in the background what ``take`` copies (None: nothing to save now)."""
        self.task = asyncio.create_task(self._save_quietly(take))

    async def save(self, take: Callable[[], Awaitable[ImageParts | None]]) -> bool:
        """Copy the catalog (``take``), check the log still holds its entry, write."""
        parts = await take()
        if parts is None:
            return False
        anchor = await self.log_of.log_entry(parts.cursor)
        if anchor is None:
            return False
        image = await asyncio.to_thread(finish, parts, anchor)
        path = await asyncio.to_thread(save_image, self.folder, image)
        self.saved, self.saved_at = (parts.catalog_id, parts.cursor), time.monotonic()
        log.info(
            "catalog image saved: %d rows at log entry %s (%s)", image.size, parts.cursor, path
        )
        return True

    async def _save_quietly(self, take: Callable[[], Awaitable[ImageParts | None]]) -> None:
        try:
            await self.save(take)
        except Exception as exc:  # an image only makes a start faster: keep serving
            log.warning("catalog image not saved: %s", exc)
