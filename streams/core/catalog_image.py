"""A worker's online catalog as one file, so a restart reads it instead of every record.

A restarting worker used to read every stored catalog record from Redis (``HSCAN``),
decode each into a ``CatalogRecord`` and apply it: 9.5 s of a quiet host's restart at
a million items. The image keeps what that work produced, in columns: the rows the
records appended to the bundle's items (ids and vectors), every row's category,
first-seen time and removal, and each row's record as the JSON it was stored as
(decoded only when asked for, ``StoredRecords``).

An image is taken at a position of the catalog log (``cursor``, a log entry id, and
``anchor``, the item that entry names) and for one bundle. A worker uses it only if it
serves that bundle and the log still holds that very entry: the log is then followed
from the cursor, so no change is lost; a change already in the image is applied again,
which changes nothing. Otherwise (another bundle, a log trimmed past the cursor or
recreated, a missing or unreadable file) it reads the stored records as before. The
file is replaced atomically, and a restart builds everything before serving any of it,
so nothing half-built is served.

Pure numpy and a local file; no client.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import struct
import time
import zipfile
import zlib
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import orjson

from inference.ann_index import AnnIndex
from inference.item_catalog import ItemCatalog
from streams.core.catalog import CatalogRecord, record_of
from streams.core.live_catalog import bundle_catalog, index_over

FORMAT: Final = 2
IMAGE_FILE: Final = "catalog-image.npz"

log = logging.getLogger("freshet.catalog")

Bytes = npt.NDArray[np.uint8]
Offsets = npt.NDArray[np.int64]


@dataclass(frozen=True)
class CatalogImage:
    """The online catalog at log entry ``cursor`` for bundle ``bundle_version``.

    Attributes:
        bundle_rows: Rows that are the bundle's items; the rest came from records.
        new_ids, new_vectors: Ids and vectors of the rows past ``bundle_rows``.
        columns: Every row's columns (``ItemCatalog.columns``).
        raw, offsets: The records, ``CHUNK`` rows at a time: chunk ``k`` is the JSON
            array ``raw[offsets[k]:offsets[k + 1]]`` of its rows' records (null: the
            row has none, a bundle item without a catalog record).
        has: Whether each row has a record.
    """

    bundle_version: str
    cursor: str
    anchor: str
    bundle_rows: int
    new_ids: list[str]
    new_vectors: npt.NDArray[np.float32]
    columns: dict[str, npt.NDArray[np.generic]]
    raw: Bytes
    offsets: Offsets
    has: npt.NDArray[np.bool_]

    @property
    def size(self) -> int:
        return self.bundle_rows + len(self.new_ids)


CHUNK: Final = 1024
"""Rows per JSON array of records. One ``orjson.dumps`` per chunk, not per record:
encoding a million records one by one took 25 s and left 4 GB of freed buffers
behind (glibc kept orjson's shrunk 4 KB buffers), and a lookup decodes one chunk."""


def _encode_chunk(records: Sequence[CatalogRecord | None]) -> bytes:
    return orjson.dumps(list(records))  # a record is a dataclass: orjson writes its fields


def _decode_chunk(raw: bytes) -> list[CatalogRecord | None]:
    return [None if o is None else record_of(o) for o in orjson.loads(raw)]


class StoredRecords(MutableMapping[str, CatalogRecord]):
    """The records by item id, read from an image's chunks as they are asked for.

    A restart holds a million of them: decoding each into a ``CatalogRecord`` up front
    cost seconds, and only a bundle swap reads them all. Records set later are kept
    as objects on top.
    """

    def __init__(
        self,
        ids: Sequence[str],
        image: CatalogImage,
        row_of: Mapping[str, int] | None = None,
    ) -> None:
        self._ids = list(ids)
        self._row = (
            dict(row_of) if row_of is not None else {item: r for r, item in enumerate(self._ids)}
        )
        self._raw, self._offsets, self._has = image.raw, image.offsets, image.has
        self._newer: dict[str, CatalogRecord] = {}
        self._gone: set[str] = set()
        self._dirty: set[int] = set()  # chunks with a row set or deleted since the image
        self._count = int(self._has.sum())
        self._cached: tuple[int, list[CatalogRecord | None]] | None = None

    def frozen(self) -> StoredRecords:
        """A copy that later writes to this one leave alone (the image part is shared:
        nobody writes it)."""
        out = StoredRecords.__new__(StoredRecords)
        out.__dict__.update(self.__dict__)
        out._newer, out._gone, out._dirty = dict(self._newer), set(self._gone), set(self._dirty)
        return out

    def _image_row(self, item_id: str) -> int | None:
        row = self._row.get(item_id)
        if row is None or row >= self._has.size or not self._has[row] or item_id in self._gone:
            return None
        return row

    def _chunk(self, k: int) -> list[CatalogRecord | None]:
        if self._cached is None or self._cached[0] != k:
            raw = self._raw[self._offsets[k] : self._offsets[k + 1]].tobytes()
            self._cached = (k, _decode_chunk(raw))
        return self._cached[1]

    def chunk_json(self, k: int, rows: Sequence[str]) -> tuple[bytes, list[bool]]:
        """Chunk ``k`` as an image stores it, for the items ``rows`` (its rows now), and
        which rows have a record; the image's own bytes when nothing in it changed."""
        lo = k * CHUNK
        if k not in self._dirty and lo + len(rows) <= self._has.size:
            return self._raw[self._offsets[k] : self._offsets[k + 1]].tobytes(), list(
                self._has[lo : lo + len(rows)]
            )
        recs = [self.get(item) for item in rows]
        return _encode_chunk(recs), [r is not None for r in recs]

    def __getitem__(self, item_id: str) -> CatalogRecord:
        rec = self._newer.get(item_id)
        if rec is not None:
            return rec
        row = self._image_row(item_id)
        found = None if row is None else self._chunk(row // CHUNK)[row % CHUNK]
        if found is None:
            raise KeyError(item_id)
        return found

    def _touch(self, item_id: str) -> None:
        row = self._row.get(item_id)
        if row is not None:
            self._dirty.add(row // CHUNK)

    def __setitem__(self, item_id: str, rec: CatalogRecord) -> None:
        if item_id not in self._newer and self._image_row(item_id) is None:
            self._count += 1
        self._newer[item_id] = rec
        self._touch(item_id)

    def __delitem__(self, item_id: str) -> None:
        if item_id not in self:
            raise KeyError(item_id)
        self._newer.pop(item_id, None)
        if self._row.get(item_id) is not None:
            self._gone.add(item_id)
        self._touch(item_id)
        self._count -= 1

    def __contains__(self, item_id: object) -> bool:
        if not isinstance(item_id, str):
            return False
        return item_id in self._newer or self._image_row(item_id) is not None

    def __iter__(self) -> Iterator[str]:
        for row in np.flatnonzero(self._has).tolist():
            item = self._ids[row]
            if item not in self._gone and item not in self._newer:
                yield item
        yield from self._newer

    def __len__(self) -> int:
        return self._count

    def all(self) -> list[CatalogRecord]:
        """Every record, the image's decoded a chunk at a time."""
        out: list[CatalogRecord] = []
        skip = self._gone | self._newer.keys()
        for k in range(self._offsets.size - 1):
            raw = self._raw[self._offsets[k] : self._offsets[k + 1]].tobytes()
            out += [r for r in _decode_chunk(raw) if r is not None and r.item_id not in skip]
        return out + list(self._newer.values())


def all_records(records: Mapping[str, CatalogRecord]) -> list[CatalogRecord]:
    """Every record of a scorer's mapping (a plain dict or ``StoredRecords``)."""
    return records.all() if isinstance(records, StoredRecords) else list(records.values())


@dataclass(frozen=True)
class ImageParts:
    """What an image needs from the catalog, copied while no page is written
    (``capture``); turning it into an image (``finish``) runs with no lock held."""

    bundle_version: str
    cursor: str
    bundle_rows: int
    ids: list[str]
    new_vectors: npt.NDArray[np.float32]
    columns: dict[str, npt.NDArray[np.generic]]
    records: Mapping[str, CatalogRecord]
    catalog_id: int  # ``id()`` of the catalog copied


def capture(
    catalog: ItemCatalog,
    bundle_rows: int,
    bundle_version: str,
    cursor: str,
    records: Mapping[str, CatalogRecord],
) -> ImageParts:
    """Copies of the columns and the records at ``cursor`` (O(rows) numpy copies)."""
    kept = records.frozen() if isinstance(records, StoredRecords) else dict(records)
    return ImageParts(
        bundle_version,
        cursor,
        bundle_rows,
        list(catalog.ids),
        catalog.vectors()[bundle_rows:].copy(),
        catalog.columns(),
        kept,
        id(catalog),
    )


def finish(parts: ImageParts, anchor: str) -> CatalogImage:
    """The image of ``parts``; ``anchor``: the item of the log entry at its cursor."""
    records, ids = parts.records, parts.ids
    chunks: list[bytes] = []
    has: list[bool] = []
    for lo in range(0, len(ids), CHUNK):
        rows = ids[lo : lo + CHUNK]
        if isinstance(records, StoredRecords):
            raw, present = records.chunk_json(lo // CHUNK, rows)
        else:
            recs = [records.get(item) for item in rows]
            raw, present = _encode_chunk(recs), [r is not None for r in recs]
        chunks.append(raw)
        has += present
    offsets = np.zeros(len(chunks) + 1, np.int64)
    np.cumsum([len(c) for c in chunks], out=offsets[1:])
    return CatalogImage(
        parts.bundle_version,
        parts.cursor,
        anchor,
        parts.bundle_rows,
        ids[parts.bundle_rows :],
        parts.new_vectors,
        parts.columns,
        np.frombuffer(b"".join(chunks), np.uint8),
        offsets,
        np.asarray(has, bool),
    )


def save_image(folder: Path, image: CatalogImage) -> Path:
    """Write ``image`` to ``folder`` (replacing the one there atomically)."""
    folder.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": FORMAT,
        "bundle_version": image.bundle_version,
        "cursor": image.cursor,
        "anchor": image.anchor,
        "bundle_rows": image.bundle_rows,
    }
    path = folder / IMAGE_FILE
    tmp = folder / f".{IMAGE_FILE}.{secrets.token_hex(4)}.tmp"
    arrays: dict[str, Any] = {
        "meta": np.frombuffer(json.dumps(meta).encode(), np.uint8),
        "new_ids": np.asarray(image.new_ids, dtype=np.str_),
        "new_vectors": image.new_vectors,
        "raw": image.raw,
        "offsets": image.offsets,
        "has": image.has,
    }
    arrays.update({f"col_{k}": v for k, v in image.columns.items()})
    with tmp.open("wb") as fh:
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def load_image(folder: Path) -> CatalogImage | None:
    """The image saved in ``folder``; None if there is none or it cannot be read."""
    path = folder / IMAGE_FILE
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes())
            if meta.get("format") != FORMAT:
                log.warning("ignoring catalog image %s: format %s", path, meta.get("format"))
                return None
            columns = {k[4:]: z[k] for k in z.files if k.startswith("col_")}
            return CatalogImage(
                str(meta["bundle_version"]),
                str(meta["cursor"]),
                str(meta["anchor"]),
                int(meta["bundle_rows"]),
                z["new_ids"].tolist(),
                z["new_vectors"],
                columns,
                _mapped_member(path, z.zip, "raw.npy"),
                z["offsets"],
                z["has"],
            )
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        log.warning("ignoring catalog image %s: %s", path, exc)
        return None


def _mapped_member(path: Path, archive: zipfile.ZipFile, name: str) -> Bytes:
    """The uint8 array stored uncompressed as ``name`` in the archive, mapped from the file.

    A 1M-item image's records are ~200 MB: ``np.load`` copied them into a fresh array in
    256 KiB reads (up to 2.9 s of a loaded host's restart), and only a bundle swap or a
    lookup reads them. The member's CRC is still checked (one pass over the mapping).
    """
    info = archive.getinfo(name)
    if info.compress_type != zipfile.ZIP_STORED:
        raise ValueError(f"{name} is compressed")
    with path.open("rb") as fh:
        fh.seek(info.header_offset)
        local = fh.read(30)  # the local file header: its name and extra field follow
        if local[:4] != b"PK\x03\x04":
            raise ValueError(f"{name}: no local file header")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        fh.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
        start = fh.tell()
    if dtype != np.uint8 or len(shape) != 1:
        raise ValueError(f"{name} is {dtype} {shape}, not uint8 bytes")
    header = start - (info.header_offset + 30 + name_len + extra_len)
    if header + shape[0] != info.file_size:
        raise ValueError(f"{name}: {shape[0]} bytes in a member of {info.file_size}")
    if shape[0] == 0:
        return np.zeros(0, np.uint8)
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=start, shape=shape)
    with path.open("rb") as fh:
        fh.seek(start - header)
        crc = zlib.crc32(fh.read(header))
    if zlib.crc32(data.data, crc) != info.CRC:
        raise zipfile.BadZipFile(f"bad CRC-32 for {name}")
    return data


def restore(
    image: CatalogImage, bundle: Any, index_folder: Path | None
) -> tuple[ItemCatalog, AnnIndex | None, StoredRecords]:
    """The catalog, index and records of ``image`` over ``bundle``'s items (the index
    read from ``index_folder`` where the bundle's is saved)."""
    t0 = time.perf_counter()
    catalog = bundle_catalog(bundle, spare=len(image.new_ids) + image.bundle_rows // 4)
    if catalog.size != image.bundle_rows:
        raise ValueError(f"image of {image.bundle_rows} bundle rows for {catalog.size}")
    if image.new_ids:
        rows = catalog.append(image.new_ids)
        catalog.write(rows, vectors=image.new_vectors)
        catalog.adopt_ids(catalog.folded_ids())  # one id map before it serves
    catalog.restore_columns(image.columns)
    t1 = time.perf_counter()
    index = index_over(catalog, image.bundle_rows, index_folder)
    t2 = time.perf_counter()
    records = StoredRecords(catalog.ids, image, catalog.id_map())
    log.info(
        "catalog image restored: item table %.2f s, ANN index %.2f s, records %.2f s",
        t1 - t0,
        t2 - t1,
        time.perf_counter() - t2,
    )
    return catalog, index, records


def usable(image: CatalogImage | None, bundle_version: str, anchor: str | None) -> bool:
    """Whether ``image`` may be served: same bundle, and the log still holds its cursor
    entry (``anchor``: the item id the log has at that entry id, None if none)."""
    return (
        image is not None
        and image.bundle_version == bundle_version
        and anchor is not None
        and anchor == image.anchor
    )
