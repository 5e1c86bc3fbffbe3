import json

import pytest
import torch

from cxr.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from cxr.models import create_model


@pytest.fixture
def model():
    torch.manual_seed(0)
    return create_model("simple_cnn", input_size=48, hidden=32).eval()


def test_round_trip_rebuilds_the_model_from_the_file_alone(tmp_path, model):
    path = save_checkpoint(tmp_path / "best.pt", model, {"epoch": 3, "metrics": {"auc": 0.7}},
                           train_state={"optimizer": {"step": torch.tensor(5)}})
    raw = torch.load(path, weights_only=True)  # no code is unpickled
    assert set(raw) == {"state_dict", "meta", "train_state"}
    meta = raw["meta"]
    assert meta["model"] == {"name": "simple_cnn", "kwargs": model.model_kwargs}
    assert meta["preprocess"]["input_size"] == 48 and len(meta["labels"]) == 14
    assert "torch" in meta["versions"] and "git_commit" in meta
    json.dumps(meta)  # JSON-safe
    loaded, meta2 = load_model(path)
    assert not loaded.training and meta2["epoch"] == 3
    x = torch.rand(2, 3, 48, 48)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]  # no temp file left behind


def test_missing_and_corrupt_files_are_clear_errors(tmp_path, model):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_model(tmp_path / "nope.pt")
    path = save_checkpoint(tmp_path / "m.pt", model, {})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated download
    with pytest.raises(CheckpointError, match="m.pt"):
        load_model(path)
    torch.save({"weights": model.state_dict()}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a cxr checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_state_dict_mismatch_is_an_error_not_random_weights(tmp_path, model):
    path = save_checkpoint(tmp_path / "m.pt", model, {})
    ckpt = torch.load(path, weights_only=True)
    ckpt["meta"]["model"]["kwargs"]["hidden"] = 64  # a head that does not fit the weights
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="cannot rebuild"):
        load_model(path)


def test_non_json_meta_is_refused_and_nothing_written(tmp_path, model):
    with pytest.raises(ValueError, match="JSON-safe"):
        save_checkpoint(tmp_path / "m.pt", model, {"path": tmp_path})
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_keeps_the_old_file_when_saving_fails(tmp_path, model, monkeypatch):
    path = save_checkpoint(tmp_path / "last.pt", model, {"epoch": 1})

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model, {"epoch": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["meta"]["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def _old_fusion_checkpoint(path):
    """A checkpoint as the cross-attention network wrote it while it was called `fusion`."""
    torch.manual_seed(0)
    old = create_model("fusion_xattn", input_size=64, dim=32, heads=2).eval()
    save_checkpoint(path, old, {"epoch": 1})
    ckpt = torch.load(path, weights_only=True)
    ckpt["meta"]["model"]["name"] = "fusion"  # kwargs: dense_stride, eff_stride, dim, heads, ...
    torch.save(ckpt, path)
    return old


def test_old_fusion_checkpoint_loads_as_fusion_xattn(tmp_path):
    old = _old_fusion_checkpoint(tmp_path / "old.pt")
    model, meta = load_model(tmp_path / "old.pt")
    assert model.model_name == "fusion_xattn"
    assert meta["model"]["name"] == "fusion_xattn" and meta["model"]["saved_as"] == "fusion"
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), old(x))


def test_new_fusion_checkpoint_stays_fusion_and_a_misfit_says_what_to_do(tmp_path):
    torch.manual_seed(0)
    new = create_model("fusion", input_size=64, dim=16).eval()
    save_checkpoint(tmp_path / "new.pt", new, {})
    model, meta = load_model(tmp_path / "new.pt")
    assert model.model_name == "fusion" and "saved_as" not in meta["model"]
    # an old cross-attention checkpoint whose kwargs were lost cannot pass as the new network
    _old_fusion_checkpoint(tmp_path / "bare.pt")
    ckpt = torch.load(tmp_path / "bare.pt", weights_only=True)
    ckpt["meta"]["model"]["kwargs"] = {"input_size": 64}
    torch.save(ckpt, tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match="cannot rebuild model 'fusion'.*fusion_xattn"):
        load_model(tmp_path / "bare.pt")
