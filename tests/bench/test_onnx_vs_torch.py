"""The ONNX-vs-torch benchmark times the same computation on both sides."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from bench import onnx_vs_torch
from training.export import PARITY_TOL


def test_rows_cover_both_models_and_batches_with_matching_outputs() -> None:
    rows = onnx_vs_torch.run([1, 3], candidates=7, repeats=2)
    assert [(r["model"], r["batch_users"], r["rows"]) for r in rows] == [
        ("user_encoder", 1, 1),
        ("user_encoder", 3, 3),
        ("ranker", 1, 7),
        ("ranker", 3, 21),
    ]
    for r in rows:
        assert r["torch_ms"] > 0 and r["onnx_ms"] > 0
        assert r["max_abs_diff"] <= PARITY_TOL * 10
        assert r["torch_over_onnx"] == pytest.approx(r["torch_ms"] / r["onnx_ms"], rel=0.01)
        assert r["onnx_provider"] == "CPUExecutionProvider"


def test_a_graph_that_disagrees_with_torch_is_not_timed(monkeypatch: Any) -> None:
    real = onnx_vs_torch.onnx_call

    def skewed(session: Any) -> Any:
        call = real(session)
        return lambda inputs: call(inputs) + np.float32(0.01)

    monkeypatch.setattr(onnx_vs_torch, "onnx_call", skewed)
    with pytest.raises(SystemExit, match="differ"):
        onnx_vs_torch.run([2], candidates=3, repeats=1)


def test_histories_mix_full_short_and_empty_rows() -> None:
    x = onnx_vs_torch.encoder_inputs(5, 20, 8, np.random.default_rng(1))
    filled = x["mask"].sum(axis=1)
    assert filled[-1] == 0 and filled.max() >= 1
    # Padding sits on the left, and padded positions carry no vector, type or gap.
    assert np.all(np.diff(x["mask"], axis=1) >= 0)
    pad = x["mask"] == 0
    assert not x["item_vecs"][pad].any() and not x["types"][pad].any()
