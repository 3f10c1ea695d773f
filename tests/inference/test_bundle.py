"""The model bundle: export, parity with torch, and refusal of broken bundles."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from freshet.cli import app
from freshet.simulator.stream import SimConfig, simulate
from freshet.wiring import load_onnx_bundle
from inference.bundle import (
    ITEM_VECTORS,
    MANIFEST,
    USER_ENCODER,
    BundleError,
    list_versions,
    load_bundle_data,
    read_current,
    set_current,
    sha256_of,
)
from inference.item_features import HashingConfig, hash_item_features
from inference.onnx_session import LoadedBundle, create_session, gpu_present
from training.data import InteractionLog, Split, build_log, time_split
from training.export import check_parity, export_bundle
from training.models.item_tower import ContentOnly
from training.train import TrainConfig, TrainResult, train

HASHING = HashingConfig(buckets=4096, max_features=16)


@pytest.fixture(scope="module")
def trained() -> tuple[TrainResult, InteractionLog, Split]:
    torch.set_num_threads(2)
    config = SimConfig(users=150, items=120, events=4000, new_item_rate=0.2, new_user_rate=0.1)
    log = build_log(simulate(config, seed=5), HASHING)
    split = time_split(log)
    result = train(log, split, TrainConfig(dim=16, history_len=8, epochs=1, threads=1), show=False)
    return result, log, split


@pytest.fixture(scope="module")
def bundle_root(
    trained: tuple[TrainResult, InteractionLog, Split], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    result, log, split = trained
    root = tmp_path_factory.mktemp("bundles")
    export_bundle(result.model, log, split, root, {"test": {"ndcg@10": 0.5}}, version="v1")
    return root


def _copy(bundle_root: Path, tmp_path: Path) -> Path:
    shutil.copytree(bundle_root / "v1", tmp_path / "v1")
    return tmp_path / "v1"


def test_export_writes_a_current_valid_bundle(bundle_root: Path) -> None:
    assert read_current(bundle_root) == "v1"
    assert list_versions(bundle_root) == ["v1"]
    assert not [p for p in bundle_root.iterdir() if p.name.startswith(".")]
    bundle = LoadedBundle.load(bundle_root, provider="cpu")
    assert bundle.version == "v1"
    assert bundle.provider == "CPUExecutionProvider"
    assert bundle.item_vectors.shape == (len(bundle.item_ids), 16)
    assert np.allclose(np.linalg.norm(bundle.item_vectors, axis=1), 1.0, atol=1e-5)
    assert bundle.manifest.hashing == HASHING
    assert bundle.rank(np.zeros((1, 4))) is None


def test_onnx_matches_torch_on_random_and_real_inputs(
    trained: tuple[TrainResult, InteractionLog, Split], bundle_root: Path
) -> None:
    result, log, _ = trained
    assert check_parity(result.model, log, bundle_root / "v1") < 1e-4
    bundle = LoadedBundle.load(bundle_root, provider="cpu")
    rng = np.random.default_rng(1)
    vecs = rng.normal(size=(5, 8, 16)).astype(np.float32)
    types = rng.integers(0, 6, size=(5, 8))
    gaps = rng.uniform(0, 10, size=(5, 8)).astype(np.float32)
    mask = (rng.uniform(size=(5, 8)) > 0.3).astype(np.float32)
    with torch.no_grad():
        expect = result.model.users(*map(torch.as_tensor, (vecs, types, gaps, mask))).numpy()
    assert np.abs(bundle.encode_users(vecs, types, gaps, mask) - expect).max() < 1e-4
    # A shorter history is left-padded to the bundle's N.
    short = bundle.encode_users(vecs[:, 3:], types[:, 3:], gaps[:, 3:], mask[:, 3:])
    with torch.no_grad():
        padded = [
            np.concatenate([np.zeros_like(a[:, :3]), a[:, 3:]], axis=1)
            for a in (vecs, types, gaps, mask)
        ]
        expect_short = result.model.users(*map(torch.as_tensor, padded)).numpy()
    assert np.abs(short - expect_short).max() < 1e-4


def _one_user(bundle: LoadedBundle, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A random history of one user (full, partly masked or empty), every event type."""
    n, d = bundle.history_len, bundle.dim
    return {
        "item_vecs": rng.normal(size=(1, n, d)).astype(np.float32),
        "types": rng.integers(0, len(bundle.manifest.event_types), size=(1, n)),
        "gaps": rng.uniform(0, 14, size=(1, n)).astype(np.float32),
        "mask": (np.arange(n) >= rng.integers(0, n + 1)).astype(np.float32)[None],
    }


def test_bound_batch_of_one_gives_encode_users_bits(bundle_root: Path) -> None:
    """The trained encoder's bound run against ``encode_users``, user after user: full,
    partly masked and empty histories, every event type, through the same buffers."""
    bundle = LoadedBundle.load(bundle_root, provider="cpu")
    bound = bundle.bound_encoder_of_one()
    assert bound is not None
    # its own session, the batch fixed to one (the served one's stays symbolic)
    assert [i.shape[0] for i in bound.session.get_inputs()] == [1, 1, 1, 1]
    assert all(isinstance(i.shape[0], str) for i in bundle._encoder.get_inputs())
    rng = np.random.default_rng(7)
    for i in range(200):
        feeds = _one_user(bundle, rng)
        for name, arr in feeds.items():
            np.copyto(bound.inputs[name], arr)
        want = bundle.encode_users(*feeds.values())
        assert bound.run().tobytes() == want.tobytes(), i


def test_the_batch_of_one_session_is_built_at_load_only_to_serve(bundle_root: Path) -> None:
    """An API, trainer or CLI load builds no batch-of-one session (~37 ms at 100k items)
    until a bound run is asked for; the worker's loader builds it with the bundle."""
    plain = LoadedBundle.load(bundle_root, provider="cpu")
    assert plain._encoder_of_one is None
    bound = plain.bound_encoder_of_one()
    assert bound is not None and bound.session is plain._encoder_of_one
    served = load_onnx_bundle(bundle_root, "v1", "cpu")
    assert served._encoder_of_one is not None and served._encoder_of_one is not served._encoder


def test_a_refused_batch_of_one_session_falls_back_to_the_served_one_bound(
    bundle_root: Path,
) -> None:
    """Where the batch-of-one session's bound run is refused (here a session of another
    graph: its inputs do not match), the served session is bound instead of none
    (d47379f's run; ffb0c63 fell back to the plain run: this fails there)."""
    bundle = LoadedBundle.load(bundle_root, provider="cpu")
    bundle._encoder_of_one = bundle._content
    bound = bundle.bound_encoder_of_one()
    assert bound is not None and bound.session is bundle._encoder
    rng = np.random.default_rng(3)
    for i in range(50):
        feeds = _one_user(bundle, rng)
        for name, arr in feeds.items():
            np.copyto(bound.inputs[name], arr)
        assert bound.run().tobytes() == bundle.encode_users(*feeds.values()).tobytes(), i


def test_cold_items_in_matrix_equal_content_embedding(
    trained: tuple[TrainResult, InteractionLog, Split], bundle_root: Path
) -> None:
    result, log, split = trained
    bundle = LoadedBundle.load(bundle_root, provider="cpu")
    trained_items = set(log.items[split.train].tolist())
    cold = [i for i in range(log.n_items) if i not in trained_items and not log.item_removed[i]]
    assert cold, "the world should have items new after the training window"
    rows = [bundle.row_of[log.item_ids[i]] for i in cold]
    online = bundle.embed_items(log.item_features[cold])
    assert np.abs(online - bundle.item_vectors[rows]).max() < 1e-4
    with torch.no_grad():
        offline = ContentOnly(result.model.items)(torch.as_tensor(log.item_features[cold]))
    assert np.abs(online - offline.numpy()).max() < 1e-4


def test_corrupt_file_is_refused(bundle_root: Path, tmp_path: Path) -> None:
    path = _copy(bundle_root, tmp_path)
    data = bytearray((path / USER_ENCODER).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (path / USER_ENCODER).write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"user_encoder.onnx is corrupt \(sha256"):
        load_bundle_data(path)


def test_incomplete_bundle_is_refused(bundle_root: Path, tmp_path: Path) -> None:
    path = _copy(bundle_root, tmp_path)
    (path / ITEM_VECTORS).unlink()
    with pytest.raises(BundleError, match=r"missing item_vectors\.npy"):
        load_bundle_data(path)
    (path / MANIFEST).unlink()
    with pytest.raises(BundleError, match=r"no manifest\.json"):
        load_bundle_data(path)


def _rewrite(path: Path, **changes: object) -> None:
    manifest = json.loads((path / MANIFEST).read_text())
    manifest.update(changes)
    manifest["files"] = {name: sha256_of(path / name) for name in manifest["files"]}
    (path / MANIFEST).write_text(json.dumps(manifest))


def test_dimension_mismatch_is_refused(bundle_root: Path, tmp_path: Path) -> None:
    path = _copy(bundle_root, tmp_path)
    _rewrite(path, dim=32)
    with pytest.raises(BundleError, match=r"item_vectors.npy is float32 \(\d+, 16\), manifest"):
        load_bundle_data(path)
    # Arrays consistent with the manifest but not with the encoder graph.
    vectors = np.load(path / ITEM_VECTORS)
    np.save(path / ITEM_VECTORS, np.pad(vectors, ((0, 0), (0, 16))))
    _rewrite(path, dim=32)
    load_bundle_data(path)
    with pytest.raises(BundleError, match=r"dummy batch|outputs"):
        LoadedBundle(load_bundle_data(path), provider="cpu")


def test_bad_manifest_fields_are_refused(bundle_root: Path, tmp_path: Path) -> None:
    path = _copy(bundle_root, tmp_path)
    _rewrite(path, format_version=99)
    with pytest.raises(BundleError, match="format_version 99 is not supported"):
        load_bundle_data(path)
    _rewrite(path, format_version=1, event_types=["<pad>", "teleport"])
    with pytest.raises(BundleError, match="teleport"):
        load_bundle_data(path)
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["event_types"] = ["<pad>", "view"]
    manifest["feature_hashing"]["tokenizer"] = "bpe"
    (path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="unknown tokenizer"):
        load_bundle_data(path)


def test_nan_model_never_becomes_current(
    trained: tuple[TrainResult, InteractionLog, Split], bundle_root: Path, tmp_path: Path
) -> None:
    result, log, split = trained
    root = tmp_path / "bundles"
    shutil.copytree(bundle_root, root)
    model = copy.deepcopy(result.model)
    with torch.no_grad():
        model.users.out.bias.fill_(float("nan"))
    with pytest.raises(BundleError, match="NaN"):
        export_bundle(model, log, split, root, version="v2")
    assert read_current(root) == "v1"


def test_models_cli_list_show_rollback(bundle_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "bundles"
    shutil.copytree(bundle_root, root)
    shutil.copytree(root / "v1", root / "v2")
    _rewrite(root / "v2", model_version="v2")
    set_current(root, "v2")
    runner = CliRunner()
    out = runner.invoke(app, ["models", "list", "--bundle-dir", str(root)])
    assert out.exit_code == 0 and "v1" in out.output and "v2" in out.output
    out = runner.invoke(app, ["models", "show", "--bundle-dir", str(root)])
    assert out.exit_code == 0 and "bundle v2 is valid" in out.output
    out = runner.invoke(app, ["models", "rollback", "--bundle-dir", str(root)])
    assert out.exit_code == 0, out.output
    assert read_current(root) == "v1"
    (root / "v2" / ITEM_VECTORS).write_bytes(b"garbage")
    out = runner.invoke(app, ["models", "rollback", "--to", "v2", "--bundle-dir", str(root)])
    assert out.exit_code == 1 and "corrupt" in out.output
    assert read_current(root) == "v1"


def test_cuda_demanded_without_gpu_is_refused(bundle_root: Path) -> None:
    if gpu_present():
        pytest.skip("a GPU is present")
    session = create_session(bundle_root / "v1" / USER_ENCODER, "auto")
    assert session.get_providers() == ["CPUExecutionProvider"]
    with pytest.raises(BundleError, match="cuda"):
        create_session(bundle_root / "v1" / USER_ENCODER, "cuda")


def test_hash_item_features_is_stable_and_padded() -> None:
    row = hash_item_features(
        ("Shoes", "running"), {"brand": "Acme", "price": 79.0}, "Red red runner!", HASHING
    )
    assert row.dtype == np.int64 and row.shape == (16,)
    assert (row[:6] > 0).all() and (row[6:] == 0).all()  # 2 cats, 2 attrs, 2 distinct words
    assert (row < HASHING.buckets).all()
    again = hash_item_features(
        ("shoes", "running"), {"price": 80.0, "brand": "acme"}, "runner red", HASHING
    )
    assert set(again[again > 0]) == set(row[row > 0])  # case, order and near prices agree
    tight = HashingConfig(buckets=4096, max_features=3)
    truncated = hash_item_features(("a", "b"), {"k": "v"}, "many words here", tight)
    full = hash_item_features(("a", "b"), {"k": "v"}, "many words here", HASHING)
    assert truncated.tolist() == full[:3].tolist()  # text is what gets dropped
