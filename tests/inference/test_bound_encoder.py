"""The user encoder's bound batch-of-one run against onnxruntime's plain run, bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from inference.onnx_session import (
    BoundRun,
    _bound_batch_of_one,
    batch_of_one_session,
    create_session,
)

N, D = 6, 5


def _encoder_graph(
    path: Path, out_type: int = TensorProto.FLOAT, batch: str | None = "batch"
) -> Path:
    """A small encoder with the bundle's four inputs: a masked, gap-weighted sum of the
    history's vectors plus a type term (non-trivial bits: exp, products, a reduction).
    ``batch``: the batch dimension's name (None: unnamed)."""
    inputs = [
        helper.make_tensor_value_info("item_vecs", TensorProto.FLOAT, [batch, N, D]),
        helper.make_tensor_value_info("types", TensorProto.INT64, [batch, N]),
        helper.make_tensor_value_info("gaps", TensorProto.FLOAT, [batch, N]),
        helper.make_tensor_value_info("mask", TensorProto.FLOAT, [batch, N]),
    ]
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [2])
    axis1 = helper.make_tensor("axis1", TensorProto.INT64, [1], [1])
    nodes = [
        helper.make_node("Neg", ["gaps"], ["neg"]),
        helper.make_node("Exp", ["neg"], ["decay"]),
        helper.make_node("Mul", ["decay", "mask"], ["w"]),
        helper.make_node("Cast", ["types"], ["tf"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["w", "tf"], ["wt"]),
        helper.make_node("Unsqueeze", ["wt", "axes"], ["w3"]),
        helper.make_node("Mul", ["item_vecs", "w3"], ["weighted"]),
        helper.make_node("ReduceSum", ["weighted", "axis1"], ["summed"], keepdims=0),
        helper.make_node("Cast", ["summed"], ["user_vec"], to=out_type),
    ]
    output = helper.make_tensor_value_info("user_vec", out_type, [batch, D])
    graph = helper.make_graph(nodes, "enc", inputs, [output], initializer=[axes, axis1])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _feeds(rng: np.random.Generator) -> dict[str, np.ndarray]:
    mask = (rng.random((1, N)) < 0.7).astype(np.float32)
    return {
        "item_vecs": rng.normal(size=(1, N, D)).astype(np.float32) * rng.uniform(0.01, 100),
        "types": rng.integers(0, 4, size=(1, N)).astype(np.int64),
        "gaps": rng.uniform(0, 14, size=(1, N)).astype(np.float32),
        "mask": mask,
    }


def test_bound_run_gives_the_plain_runs_bits_call_after_call(tmp_path: Path) -> None:
    session = create_session(_encoder_graph(tmp_path / "enc.onnx"), "cpu")
    bound = _bound_batch_of_one(session, N, D)
    assert bound is not None
    rng = np.random.default_rng(3)
    previous = None
    for _ in range(50):
        feeds = _feeds(rng)
        for name, arr in feeds.items():  # the caller writes its feeds in place
            np.copyto(bound.inputs[name], arr)
        got = bound.run()
        want = np.asarray(session.run(["user_vec"], feeds)[0], np.float32)
        assert got.shape == want.shape == (1, D)
        assert got.tobytes() == want.tobytes()
        if previous is not None:  # a returned output is the caller's: the next run keeps it
            assert previous[0].tobytes() == previous[1].tobytes()
        previous = (got, got.copy())


def test_inputs_are_the_arrays_the_run_reads(tmp_path: Path) -> None:
    session = create_session(_encoder_graph(tmp_path / "enc.onnx"), "cpu")
    bound = _bound_batch_of_one(session, N, D)
    assert bound is not None
    bound.inputs["mask"][:] = 0.0
    bound.inputs["types"][:] = 0
    assert not bound.run().any()  # everything masked and no type term: zero
    bound.inputs["types"][0, 2] = 1
    bound.inputs["item_vecs"][0, 2] = np.arange(D, dtype=np.float32)
    assert np.array_equal(bound.run()[0], np.arange(D, dtype=np.float32))


def test_a_graph_whose_output_is_not_float32_keeps_the_plain_run(tmp_path: Path) -> None:
    session = create_session(_encoder_graph(tmp_path / "enc.onnx", TensorProto.DOUBLE), "cpu")
    assert _bound_batch_of_one(session, N, D) is None
    with pytest.raises(Exception, match="not float32"):
        BoundRun(
            session,
            {k: np.zeros_like(v) for k, v in _feeds(np.random.default_rng(0)).items()},
            "user_vec",
        )


def test_the_batch_of_one_session_fixes_the_batch_and_gives_the_served_bits(
    tmp_path: Path,
) -> None:
    path = _encoder_graph(tmp_path / "enc.onnx")
    served = create_session(path, "cpu")
    runner = batch_of_one_session(path, served)
    assert runner is not served
    assert [i.shape[0] for i in runner.get_inputs()] == [1, 1, 1, 1]
    assert [i.shape[0] for i in served.get_inputs()] == ["batch"] * 4
    bound = _bound_batch_of_one(served, N, D, runner)
    assert bound is not None and bound.session is runner
    rng = np.random.default_rng(5)
    for _ in range(50):
        feeds = _feeds(rng)
        for name, arr in feeds.items():
            np.copyto(bound.inputs[name], arr)
        want = np.asarray(served.run(["user_vec"], feeds)[0], np.float32)
        assert bound.run().tobytes() == want.tobytes()


def test_a_graph_with_an_unnamed_batch_dimension_keeps_the_served_session(
    tmp_path: Path,
) -> None:
    path = _encoder_graph(tmp_path / "enc.onnx", batch=None)
    served = create_session(path, "cpu")
    assert batch_of_one_session(path, served) is served
    bound = _bound_batch_of_one(served, N, D, served)
    assert bound is not None and bound.session is served


def test_a_runner_whose_bits_differ_is_refused(tmp_path: Path) -> None:
    """The load-time check compares the runner against the served session's plain run:
    a graph that computes something else is not bound."""
    served = create_session(_encoder_graph(tmp_path / "enc.onnx"), "cpu")
    other = create_session(_encoder_graph(tmp_path / "other.onnx", batch="b"), "cpu")
    assert _bound_batch_of_one(served, N, D, other) is not None  # the same graph
    model = onnx.load(str(tmp_path / "other.onnx"))
    model.graph.node[1].op_type = "Abs"  # Exp -> Abs: other bits
    onnx.save(model, str(tmp_path / "other.onnx"))
    other = create_session(tmp_path / "other.onnx", "cpu")
    assert _bound_batch_of_one(served, N, D, other) is None
