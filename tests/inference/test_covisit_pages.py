"""The co-visitation table's memory is touched when it grows, not inside a scoring call.

A bundle swap grows (``remap``) the table off the scoring lock; pages left unmapped
then (``np.zeros`` is calloc: mapped on first write) were faulted in by the first pair
rows written in scoring calls, 7-62 ms of CPU each at 100k items.
"""

from __future__ import annotations

import resource

import numpy as np

from inference.covisit import CovisitTable


def _minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def test_rows_written_after_grow_fault_no_pages() -> None:
    table = CovisitTable(200)
    table.grow(50_000)  # 40 MB per (n, width) array
    before = _minor_faults()
    # One write per page (1,024 float32 a 4 KiB page; a row is 800 bytes).
    table.weight[::5, 0] = 1.0
    table.error[::5, 0] = 1.0
    table.occ[::1024] = 1.0
    faults = _minor_faults() - before
    # calloc'd arrays fault here once per page (or per huge page): hundreds at least.
    assert faults < 20, f"{faults} page faults writing rows of a grown table"


def test_grow_keeps_rows_and_zeroes_the_rest() -> None:
    table = CovisitTable(4)
    table.add([0, 1, 1], [1, 2, 0], [1.0, 2.0, 0.5])
    nbr, weight, error, occ = (a.copy() for a in (table.nbr, table.weight, table.error, table.occ))
    old = table.size
    table.grow(old + 1)
    assert table.size >= 2 * old
    np.testing.assert_array_equal(table.nbr[:old], nbr)
    np.testing.assert_array_equal(table.weight[:old], weight)
    np.testing.assert_array_equal(table.error[:old], error)
    np.testing.assert_array_equal(table.occ[:old], occ)
    assert (table.nbr[old:] == -1).all()
    assert not table.weight[old:].any() and not table.error[old:].any()
    assert not table.occ[old:].any()
