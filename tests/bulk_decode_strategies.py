"""Hypothesis strategies both bulk-decoder suites draw from: topic values with one fault.

``tests/schemas/test_catalog_bulk_decode.py`` and ``test_interaction_bulk_decode.py``
build a valid record of their topic, then ``planted`` puts one fault in it (a field
set to a value the contract refuses, a field removed, or the bytes cut or broken), so
the bulk decoder and the one-by-one decoder can be compared on every kind of refusal.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import strategies as st

NOW = 1_800_000_000_000

ids = st.from_regex(r"[A-Za-z0-9_.@+=/-]{1,12}", fullmatch=True)
names = st.from_regex(r"[A-Za-z0-9_.-]{1,8}", fullmatch=True)
scalars = st.one_of(
    st.text(max_size=6), st.integers(-5, 5), st.floats(allow_nan=False), st.booleans()
)

# Values either topic's contract refuses somewhere (or accepts only in some fields).
COMMON_FAULTS: list[Any] = [
    "a b",
    "x\n",
    "",
    "é",
    "x" * 129,
    -1,
    0,
    999,
    1.5,
    True,
    None,
    [],
    {},
    {"bad key": 1},
    {"k": [1]},
    {"k": "v" * 257},
    NOW + 10**9,
    10**15,
    "zap",
    2,
]


def faults(extra: list[Any], int_max: int) -> st.SearchStrategy[Any]:
    """The common faults and ``extra``, any float, integer up to ``int_max`` or short text."""
    return st.one_of(
        st.sampled_from([*COMMON_FAULTS, *extra]),
        st.floats(),
        st.integers(-(2**63), int_max),
        st.text(max_size=4),
    )


def planted(
    draw: st.DrawFn, obj: dict[str, Any], more_fields: list[str], fault: st.SearchStrategy[Any]
) -> bytes:
    """``obj`` encoded, after (in 6 draws of 10) one fault planted in it.

    A field of ``obj`` or of ``more_fields`` set to a drawn ``fault`` (a new field: an
    unknown one), a field removed, or the encoded bytes cut, broken by a byte that is
    not UTF-8, or replaced by JSON that is not an object.
    """
    kind = draw(st.integers(0, 9))
    if kind <= 3:
        field = draw(st.sampled_from([*obj, *more_fields]))
        obj[field] = draw(fault)
    elif kind == 4 and len(obj) > 1:
        del obj[draw(st.sampled_from(sorted(obj)))]
    raw = orjson.dumps(obj)
    if kind == 5:
        cut = draw(st.integers(0, len(raw)))
        raw = draw(st.sampled_from([raw[:cut], raw[:cut] + b"\xff" + raw[cut:], b"[1]", b"7"]))
    return raw
