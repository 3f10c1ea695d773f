"""The BLAS pools the worker caps at start-up really shrink, and 0 leaves them alone."""

from __future__ import annotations

from collections.abc import Iterator

import faiss  # noqa: F401  (its OpenBLAS must be loaded to be capped)
import numpy as np
import pytest
from threadpoolctl import threadpool_info

from inference import thread_limits


def _blas() -> dict[str, int]:
    return {
        i["filepath"].rsplit("/", 1)[-1]: i["num_threads"]
        for i in threadpool_info()
        if i["user_api"] == "blas"
    }


@pytest.fixture()
def restore() -> Iterator[None]:
    before = len(thread_limits._limits)
    yield
    while len(thread_limits._limits) > before:
        thread_limits._limits.pop().restore_original_limits()


def test_cap_applies_to_every_loaded_blas(restore: None) -> None:
    assert any("openblas" in name for name in _blas())  # numpy's, at least
    after = thread_limits.limit_blas_threads(1)
    assert after == _blas()
    assert after and set(after.values()) == {1}
    # Still computes, single-threaded.
    a = np.arange(64 * 64, dtype=np.float32).reshape(64, 64)
    assert np.allclose(a @ np.eye(64, dtype=np.float32), a)


def test_zero_keeps_the_libraries_defaults(restore: None) -> None:
    before = _blas()
    assert thread_limits.limit_blas_threads(0) == before
    assert _blas() == before
