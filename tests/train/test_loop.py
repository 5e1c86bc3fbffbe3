"""In-process training runs on the tiny synthetic set (CPU, 32 px, 4 steps per epoch)."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from cxr.checkpoint import load_checkpoint, load_model
from cxr.labels import FINDINGS
from cxr.train import TrainConfig, train
from cxr.train.progress import HISTORY_COLUMNS, History


def _progress(run_dir):
    return json.loads((run_dir / "progress.json").read_text())


def _history(run_dir):
    return pd.read_csv(run_dir / "history.csv")


def _assert_same_history(a, b):
    """Interrupted and uninterrupted runs: same rows, same numbers (timings aside)."""
    assert list(a["epoch"]) == list(b["epoch"]) and list(a["phase"]) == list(b["phase"])
    for column in ("train_loss", "val_loss", "val_macro_auc", *[f"val_auc_{f}" for f in FINDINGS]):
        np.testing.assert_allclose(a[column], b[column], rtol=1e-5, atol=1e-7, err_msg=column)


def test_outputs_exist_and_parse(reference_run, base_values):
    run = reference_run
    for name in ("config.yaml", "split.csv", "split.json", "history.csv", "progress.json",
                 "best.pt", "last.pt", "train.log"):
        assert (run / name).is_file(), name
    history = _history(run)
    assert list(history.columns) == HISTORY_COLUMNS
    assert list(history["epoch"]) == [1, 2, 3] and set(history["phase"]) == {"full"}
    assert history["val_macro_auc"].between(0, 1).all() and (history["val_classes"] >= 5).all()
    progress = _progress(run)
    assert progress["status"] == "finished" and progress["fraction"] == 1.0
    assert progress["global_step"] == progress["total_steps"] == 12 and progress["error"] is None
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert TrainConfig(**config) == TrainConfig(**base_values)  # the resolved config, reloadable

    split = pd.read_csv(run / "split.csv")
    sidecar = json.loads((run / "split.json").read_text())
    best = load_checkpoint(run / "best.pt")["meta"]
    assert best["split"]["content_hash"] == sidecar["content_hash"]
    assert history["val_images"].iloc[0] == (split["split"] == "val").sum()  # every val image once
    best_row = history.loc[history["val_macro_auc"].idxmax()]
    assert best["epoch"] == best_row["epoch"]
    assert best["metrics"]["val_macro_auc"] == pytest.approx(best_row["val_macro_auc"])
    assert best["config"]["model"] == "simple_cnn" and best["data_version"].startswith("Data_Entry")
    assert best["synthetic"] is True  # trained on `cxr synth` phantoms, and the meta says so
    assert "epoch 3" in (run / "train.log").read_text()


def test_a_finished_run_holds_exactly_the_run_files(reference_run):
    """RUN_FILES is all a run writes: what makes a folder taken and what --force deletes."""
    from cxr.rundir import RUN_FILES
    assert sorted(p.name for p in reference_run.iterdir()) == sorted(RUN_FILES)


def test_best_checkpoint_reloads_and_gives_the_same_predictions(reference_run, tiny_data):
    from cxr.data.dataset import CXRDataset
    from cxr.data.layout import DatasetFiles
    from cxr.data.metadata import read_data_entry
    from cxr.data.splits import attach_split, load_split
    from cxr.data.transforms import EvalTransform
    from cxr.evaluation.metrics import macro_auc, per_finding_auc
    from cxr.losses import make_loss

    raw = torch.load(reference_run / "best.pt", weights_only=True)
    assert {"state_dict", "meta"} <= set(raw)
    model, meta = load_model(reference_run / "best.pt")
    assert meta["preprocess"]["input_size"] == 32 == model.preprocess["input_size"]
    files = DatasetFiles.locate(tiny_data)
    table = read_data_entry(files.data_entry, images_root=files.images_root)
    split, _ = load_split(reference_run / "split.csv")
    val = attach_split(table, split).query("split == 'val'")
    ds = CXRDataset(val, EvalTransform(32, meta["preprocess"]["mean"], meta["preprocess"]["std"]))
    with torch.no_grad():
        logits = torch.stack([model(ds[i][0][None])[0] for i in range(len(ds))])
    probs = torch.sigmoid(logits)
    macro, _ = macro_auc(per_finding_auc(ds.targets, probs.numpy()))
    loss = float(make_loss("focal", alpha=0.25, gamma=2.0)(logits, torch.tensor(ds.targets)))
    assert loss == pytest.approx(meta["metrics"]["val_loss"], rel=1e-5)
    # near-tied scores of a barely trained model may swap order under 1e-7 rounding
    assert macro == pytest.approx(meta["metrics"]["val_macro_auc"], abs=0.01)


def test_two_phases_freeze_what_they_should(base_values, tmp_path, monkeypatch):
    from cxr.models import create_model
    from cxr.train import loop

    snapshots, grads = [], []
    original = loop.Trainer.end_epoch

    def spy(self, phase, *args, **kw):  # state right after each epoch's training steps
        model = loop.unwrap(self.model)
        snapshots.append((phase.name, {k: v.clone() for k, v in model.state_dict().items()}))
        grads.append({n for n, p in model.named_parameters() if p.requires_grad})
        return original(self, phase, *args, **kw)
    monkeypatch.setattr(loop.Trainer, "end_epoch", spy)
    values = {**base_values, "model": "efficientnet_b0", "schedule": "two_phase", "epochs": 1,
              "max_steps_per_epoch": 2, "lr_finetune": 1e-3}
    assert train(TrainConfig(**values), tmp_path / "run") == 0
    assert list(_history(tmp_path / "run")["phase"]) == ["head", "finetune"]

    loop.seed_everything(0)  # the run's initial weights
    initial = create_model("efficientnet_b0", input_size=32).state_dict()
    (p1, after_head), (p2, after_fine) = snapshots
    changed = {k for k in initial if not torch.equal(initial[k], after_head[k])}
    assert p1 == "head" and changed and all(k.startswith("head.") for k in changed)
    assert all(n.startswith("head.") for n in grads[0])
    # fine-tuning starts from the best head-phase weights and moves the backbone
    assert grads[0] < grads[1] and all(not n.startswith("head.") for n in grads[1] - grads[0])
    moved = {k for k in after_head if not torch.equal(after_head[k], after_fine[k])}
    assert p2 == "finetune" and any(k.startswith("backbone.") for k in moved)
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    assert last["meta"]["phase"] == "finetune"


def test_stop_file_stops_cleanly_and_resume_matches_uninterrupted(base_values, reference_run,
                                                                   tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    (run / "STOP").touch()  # a stop request before the first step: stops after it
    assert train(TrainConfig(**base_values), run) == 0
    progress = _progress(run)
    assert progress["status"] == "stopped" and progress["step"] == 1
    assert not (run / "STOP").exists()  # consumed
    state = load_checkpoint(run / "last.pt")["train_state"]["loop"]
    assert (state["epoch"], state["step"]) == (0, 1)

    append = History.append

    def stop_in_second_epoch(history, row):  # a request as soon as epoch 1 is recorded
        append(history, row)
        if row["epoch"] == 1:
            (run / "STOP").touch()
    monkeypatch.setattr(History, "append", stop_in_second_epoch)
    assert train(None, run, resume=True) == 0
    assert _progress(run)["status"] == "stopped" and _progress(run)["epoch"] == 2
    assert train(None, run, resume=True) == 0
    assert _progress(run)["status"] == "finished"
    _assert_same_history(_history(run), _history(reference_run))


def test_non_finite_loss_fails_and_keeps_the_last_good_checkpoint(base_values, tmp_path,
                                                                   monkeypatch):
    import cxr.losses
    real = cxr.losses.make_loss
    calls = []

    def poisoned(name, **params):  # epoch 1: 4 steps + 1 validation call; then NaN
        fn = real(name, **params)

        def loss(logits, targets):
            calls.append(1)
            value = fn(logits, targets)
            return value * float("nan") if len(calls) == 6 else value
        return loss
    monkeypatch.setattr(cxr.losses, "make_loss", poisoned)
    run = tmp_path / "run"
    assert train(TrainConfig(**base_values), run) == 1
    progress = _progress(run)
    assert progress["status"] == "failed"
    assert "epoch 2, step 1" in progress["error"] and "not finite" in progress["error"]
    last = load_checkpoint(run / "last.pt")
    assert last["meta"]["epoch"] == 1 and load_checkpoint(run / "best.pt")["meta"]["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values())
    assert len(_history(run)) == 1


def test_used_run_dir_is_refused_without_resume_or_force(reference_run, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(reference_run, run)
    before = (run / "history.csv").read_text()
    with pytest.raises(ValueError, match="--resume"):
        train(TrainConfig(**yaml.safe_load((run / "config.yaml").read_text())), run)
    assert (run / "history.csv").read_text() == before  # nothing lost
    assert train(None, run, resume=True) == 0  # an already finished run: nothing to do
    assert (run / "history.csv").read_text() == before and _progress(run)["status"] == "finished"
    (run / "eval").mkdir()
    (run / "eval" / "metrics.json").write_text("{}")
    values = {**yaml.safe_load((run / "config.yaml").read_text()), "epochs": 1}
    assert train(TrainConfig(**values), run, force=True) == 0
    assert len(_history(run)) == 1 and not (run / "eval").exists()


def test_time_budget_ends_the_run_as_finished(base_values, tmp_path):
    run = tmp_path / "run"
    assert train(TrainConfig(**{**base_values, "max_minutes": 1e-4}), run) == 0
    progress = _progress(run)
    assert progress["status"] == "finished" and "time budget" in progress["message"]
    history = _history(run)
    assert len(history) == 1 and history["val_macro_auc"].notna().all()
    assert (run / "best.pt").is_file()


def test_resume_without_a_run_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.yaml"):
        train(None, tmp_path, resume=True)


def test_a_run_that_failed_before_training_may_be_started_again(tmp_path):
    from cxr.train.loop import check_run_dir
    (tmp_path / "config.yaml").write_text("model: fusion\n")
    (tmp_path / "progress.json").write_text('{"status": "failed", "error": "hub unreachable"}')
    check_run_dir(tmp_path, resume=False, force=False)  # nothing of value to lose
    (tmp_path / "history.csv").write_text("phase,epoch\nfull,1\n")
    with pytest.raises(ValueError, match="already holds a run"):
        check_run_dir(tmp_path, resume=False, force=False)


def test_resume_refuses_a_checkpoint_of_another_network(reference_run, tmp_path):
    """A run of the cross-attention net from when it was called `fusion` (config.yaml says
    fusion, which is now the report's network) must not resume into the wrong network."""
    run = tmp_path / "old"
    shutil.copytree(reference_run, run)
    ckpt = torch.load(run / "last.pt", weights_only=True)
    ckpt["meta"]["model"] = {"name": "fusion", "kwargs": {"dense_stride": 16, "eff_stride": 16,
                                                          "dim": 256, "heads": 8}}
    torch.save(ckpt, run / "last.pt")
    with pytest.raises(ValueError, match="holds a fusion_xattn model .saved as fusion.*"
                                         "set model: fusion_xattn in"):
        train(None, run, resume=True)


@pytest.fixture(scope="module")
def cached_tiny(tiny_data, tmp_path_factory):
    """A copy of the tiny set with `cxr prepare`'s cache at 64 px (a copy: the other tests
    train on tiny_data without one)."""
    from cxr.data.cache import build_cache
    from cxr.data.layout import DatasetFiles, data_version
    from cxr.data.metadata import read_data_entry
    out = tmp_path_factory.mktemp("cached") / "tiny"
    shutil.copytree(tiny_data, out)
    files = DatasetFiles.locate(out)
    table = read_data_entry(files.data_entry, images_root=files.images_root)
    build_cache(zip(table["image"], table["path"]), files.cache_dir, 64, workers=1,
                data_version=data_version(files.data_entry), progress=False)
    return out


def test_gpu_augment_on_cpu_trains_exactly_like_the_per_image_path(cached_tiny, base_values,
                                                                   tmp_path):
    """gpu_augment=on forced on the CPU: uint8 64 px batches resized and augmented in one go
    give the same inputs, bit for bit, so the same losses and AUCs as per-image workers."""
    values = {**base_values, "data_dir": str(cached_tiny), "epochs": 2, "workers": 1}
    for mode in ("on", "off"):
        assert train(TrainConfig(**values, gpu_augment=mode), tmp_path / mode) == 0
    assert "augmentation: in batches on cpu" in (tmp_path / "on" / "train.log").read_text()
    assert "augmentation: per image" in (tmp_path / "off" / "train.log").read_text()
    _assert_same_history(_history(tmp_path / "on"), _history(tmp_path / "off"))


def test_gpu_augment_on_without_a_cache_is_a_clear_error(base_values, tmp_path):
    with pytest.raises(ValueError, match="gpu_augment=on .*cxr prepare"):
        train(TrainConfig(**{**base_values, "gpu_augment": "on"}), tmp_path / "run")
