"""Feature hashing of catalog content into fixed-width id rows, shared by training and serving.

Training imports this module to build the item tower's inputs and the online worker
calls the same function on catalog events, so an item is hashed by literally the same
code in both places. The configuration travels in the bundle manifest.

An item's row lists hashed token ids in field order (categories, then attributes, then
text), deduplicated, truncated to ``max_features`` and right-padded with 0, which is
reserved for padding (real tokens hash into ``1..buckets-1``).
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

import numpy as np

TOKENIZER: Final = "lower-alnum-v1"
HASH: Final = "crc32"
FIELDS: Final = ("categories", "attributes", "text")

_TOKEN_RE: Final = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True, slots=True)
class HashingConfig:
    """How catalog content becomes a row of hashed feature ids.

    Attributes:
        buckets: Size of the hashed vocabulary, including the padding id 0.
        max_features: Width ``F`` of a row; extra tokens are dropped (text first).
        max_text_tokens: At most this many distinct text tokens are kept.
        fields: Which fields are hashed, in order.
        tokenizer: Name of the text tokenizer (lower-case, runs of ``[a-z0-9]``).
        hash: Name of the hash function (CRC-32 of the UTF-8 token).
    """

    buckets: int = 1 << 15
    max_features: int = 32
    max_text_tokens: int = 16
    fields: tuple[str, ...] = FIELDS
    tokenizer: str = TOKENIZER
    hash: str = HASH

    def to_dict(self) -> dict[str, Any]:
        """The manifest form of this config."""
        out = asdict(self)
        out["fields"] = list(self.fields)
        return out

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> HashingConfig:
        """Parse the manifest form; raises ``ValueError`` when it is not sane."""
        try:
            config = cls(
                buckets=int(obj["buckets"]),
                max_features=int(obj["max_features"]),
                max_text_tokens=int(obj["max_text_tokens"]),
                fields=tuple(str(f) for f in obj["fields"]),
                tokenizer=str(obj["tokenizer"]),
                hash=str(obj["hash"]),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"feature hashing config is incomplete: {exc}") from None
        config.check()
        return config

    def check(self) -> None:
        """Raise ``ValueError`` unless this config can be served by this code."""
        if self.buckets < 2 or self.buckets > 1 << 24:
            raise ValueError(f"buckets {self.buckets} outside 2..{1 << 24}")
        if self.max_features < 1 or self.max_features > 1024:
            raise ValueError(f"max_features {self.max_features} outside 1..1024")
        if self.max_text_tokens < 0:
            raise ValueError("max_text_tokens must be >= 0")
        unknown = set(self.fields) - set(FIELDS)
        if unknown or not self.fields:
            raise ValueError(f"fields must be a non-empty subset of {FIELDS}, got {self.fields}")
        if self.tokenizer != TOKENIZER:
            raise ValueError(f"unknown tokenizer {self.tokenizer!r}, this code has {TOKENIZER!r}")
        if self.hash != HASH:
            raise ValueError(f"unknown hash {self.hash!r}, this code has {HASH!r}")


def tokenize(text: str) -> list[str]:
    """Lower-case runs of ASCII letters and digits, in order of appearance."""
    return _TOKEN_RE.findall(text.lower())


def _attribute_token(key: str, value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return f"{key}={'true' if value else 'false'}"
    if isinstance(value, int | float):
        # Numbers become coarse log-scale bands so that nearby prices share a token.
        if not math.isfinite(value):
            return f"{key}~nan"
        band = round(math.log2(1.0 + abs(value)) * 2.0)
        return f"{key}~{'-' if value < 0 else ''}{band}"
    return f"{key}={value.lower()}"


def feature_tokens(
    categories: Sequence[str],
    attributes: Mapping[str, str | int | float | bool],
    text: str,
    config: HashingConfig,
) -> list[str]:
    """The field-prefixed tokens of one item, before hashing (useful for debugging)."""
    tokens: list[str] = []
    for name in config.fields:
        if name == "categories":
            tokens.extend(f"c:{cat.lower()}" for cat in categories)
        elif name == "attributes":
            tokens.extend(f"a:{_attribute_token(k, v)}" for k, v in sorted(attributes.items()))
        else:
            words = list(dict.fromkeys(tokenize(text)))[: config.max_text_tokens]
            tokens.extend(f"t:{w}" for w in words)
    return tokens


def hash_token(token: str, buckets: int) -> int:
    """The id of one token: CRC-32 of its UTF-8 bytes into ``1..buckets-1``."""
    return 1 + zlib.crc32(token.encode("utf-8")) % (buckets - 1)


def hash_item_features(
    categories: Sequence[str],
    attributes: Mapping[str, str | int | float | bool],
    text: str,
    config: HashingConfig,
) -> np.ndarray:
    """One item's hashed feature row: int64 of shape ``(max_features,)``, 0-padded."""
    row = np.zeros(config.max_features, dtype=np.int64)
    ids = dict.fromkeys(
        hash_token(t, config.buckets) for t in feature_tokens(categories, attributes, text, config)
    )
    kept = list(ids)[: config.max_features]
    row[: len(kept)] = kept
    return row


def hash_items_batch(
    items: Sequence[tuple[Sequence[str], Mapping[str, str | int | float | bool], str]],
    config: HashingConfig,
) -> np.ndarray:
    """Hashed rows of many items ``(categories, attributes, text)``: int64 ``(B, F)``."""
    out = np.zeros((len(items), config.max_features), dtype=np.int64)
    for i, (cats, attrs, text) in enumerate(items):
        out[i] = hash_item_features(cats, attrs, text, config)
    return out
