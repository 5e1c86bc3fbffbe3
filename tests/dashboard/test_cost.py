"""cxr/dashboard/cost.py: steps per epoch as the trainer counts them, a short measured warm-up
(scaled, cached, the server's RNG untouched) and the estimate built from both."""
from __future__ import annotations

import itertools
import shutil

import pytest
import torch

from cxr.dashboard import cost
from cxr.dashboard.cost import MeasureKey, PhaseWork, StepTiming, Workload
from cxr.train.config import TrainConfig
from cxr.train.precision import Precision

FP32_CPU = Precision("cpu", bf16=False, channels_last=False)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from cxr.synth.generate import generate_dataset
    out = tmp_path_factory.mktemp("cost") / "tiny"
    generate_dataset(out, patients=20, size=32, seed=0, workers=1)
    return out


@pytest.fixture(autouse=True)
def fresh_caches(monkeypatch):
    cost._split_sizes.cache_clear()
    monkeypatch.setattr(cost, "_measured", {})
    yield
    cost._split_sizes.cache_clear()


def cpu_key(batch=8, model="simple_cnn", size=32) -> MeasureKey:
    return MeasureKey(model, f'{{"input_size": {size}}}', size, batch, "cpu", FP32_CPU)


@pytest.mark.parametrize("images, batch, cap, steps", [
    (100, 32, None, 4), (96, 32, None, 3), (1, 32, None, 1), (100, 32, 2, 2), (100, 32, 9, 4)])
def test_steps_per_epoch_is_the_trainers_count(images, batch, cap, steps):
    assert cost.steps_per_epoch(images, batch, cap) == steps


def test_the_split_counts_images_on_disk_as_the_trainer_reads_them(synth, tmp_path):
    cfg = TrainConfig(data_dir=str(synth), model="simple_cnn", batch_size=4, epochs=3)
    work = cost.workload(cfg)
    assert work.images_missing == 0 and work.train_images > work.val_images > 0
    assert work.steps_per_epoch == -(-work.train_images // 4) and not work.capped
    # a train image missing from disk is left out (the trainer logs and skips it)
    image = images_of(synth, "train")[0]
    moved = tmp_path / "away.png"
    shutil.move(image, moved)
    try:
        cost._split_sizes.cache_clear()
        less = cost.workload(cfg)
    finally:
        shutil.move(moved, image)
    assert (less.train_images, less.images_missing) == (work.train_images - 1, 1)
    assert less.val_images == work.val_images


def test_phases_and_epochs_follow_the_trainers_plan(synth):
    base = dict(data_dir=str(synth), model="densenet121", epochs=10, max_steps_per_epoch=1)
    two = cost.workload(TrainConfig(**base, pretrained=True))
    assert [(p.name, p.frozen_backbone, p.max_epochs) for p in two.phases] == [
        ("head", True, 10), ("finetune", False, 10)]
    assert two.max_epochs == 20 and two.steps_per_epoch == 1 and two.capped
    total = cost.workload(TrainConfig(**base, pretrained=True, epochs_budget="total"))
    assert [p.max_epochs for p in total.phases] == [5, 5]
    random_init = cost.workload(TrainConfig(**base, pretrained=False))
    assert [(p.name, p.max_epochs) for p in random_init.phases] == [("full", 10)]


def test_a_saved_split_is_counted_not_made_again(synth, tmp_path):
    from cxr.data.splits import make_split, save_split
    out = tmp_path / "split.csv"
    fractions = [0.5, 0.3, 0.2]
    save_split(make_split(metadata(synth), "patient", fractions=fractions), out,
               {"strategy": "patient", "seed": 0, "patient_fraction": 1.0,
                "fractions": fractions, "data_version": "test", "report": {}})
    made = cost.workload(TrainConfig(data_dir=str(synth), model="simple_cnn"))
    saved = cost.workload(TrainConfig(data_dir=str(synth), model="simple_cnn",
                                      split_path=str(out)))
    assert saved.train_images < made.train_images and saved.val_images > made.val_images


def metadata(data):
    from cxr.data.layout import DatasetFiles
    from cxr.data.metadata import read_data_entry
    files = DatasetFiles.locate(data)
    return read_data_entry(files.data_entry, images_root=files.images_root)


def images_of(data, split: str) -> list[str]:
    """Paths of the images the default patient split (seed 0) puts in `split`."""
    from cxr.data.splits import attach_split, make_split
    table = metadata(data)
    joined = attach_split(table, make_split(table, "patient", seed=0))
    return joined.loc[joined["split"] == split, "path"].tolist()


def test_no_dataset_or_no_images_is_an_error_naming_it(tmp_path, synth):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        cost.workload(TrainConfig(data_dir=str(tmp_path / "nowhere")))
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "Data_Entry_2017.csv").write_text((synth / "Data_Entry_2017.csv").read_text())
    with pytest.raises(ValueError, match="no images on disk"):
        cost.workload(TrainConfig(data_dir=str(bare)))


def test_official_split_of_the_real_metadata(nih_dir):
    """train + val are train_val_list.txt's images on disk (of the 56 real ones)."""
    from cxr.data.metadata import index_images
    on_disk = set(index_images(nih_dir))
    listed = set((nih_dir / "train_val_list.txt").read_text().split())
    work = cost.workload(TrainConfig(data_dir=str(nih_dir), split_strategy="official",
                                     batch_size=2))
    assert work.train_images + work.val_images == len(on_disk & listed)
    assert work.images_missing == len(listed) - len(on_disk & listed)


def test_the_key_is_what_the_run_will_use():
    key = MeasureKey.of(TrainConfig(model="fusion", device="cpu", amp=False,
                                    channels_last=False, batch_size=16))
    assert (key.model, key.image_size, key.batch_size, key.device) == ("fusion", 224, 16, "cpu")
    assert key.precision.name == "fp32"
    sized = MeasureKey.of(TrainConfig(image_size=64, model_kwargs={"dim": 32}, device="cpu"))
    assert sized.image_size == 64 and '"dim": 32' in sized.kwargs
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            MeasureKey.of(TrainConfig(device="cuda"))


def test_a_cpu_warmup_is_two_small_steps_scaled_to_the_batch(monkeypatch):
    clock = itertools.count()  # every reading one second later: forward 1 s, step 2 s
    monkeypatch.setattr(cost, "_now", lambda device: float(next(clock)))
    rng = torch.get_rng_state()
    timing = cost.measure_step_seconds(cpu_key(batch=32))
    assert torch.equal(torch.get_rng_state(), rng)  # the server's RNG is untouched
    small = cost.CPU_WARMUP_BATCH
    assert (timing.measured_batch, timing.warmup_steps, timing.timed_steps) == (small, 1, 1)
    assert (timing.step_s, timing.forward_s) == (2 * 32 / small, 1 * 32 / small)
    assert f"scaled linearly to batch 32 (x{32 / small:g})" in timing.how()
    tiny = cost.measure_step_seconds(cpu_key(batch=1))
    assert tiny.measured_batch == 1 and "scaled" not in tiny.how()


def test_a_real_warmup_times_forward_within_the_step():
    timing = cost.measure_step_seconds(cpu_key(batch=4))
    assert 0 < timing.forward_s < timing.step_s


def test_the_warmup_runs_once_per_key(monkeypatch):
    calls = []
    monkeypatch.setattr(cost, "measure_step_seconds",
                        lambda key: calls.append(key) or StepTiming(key, 1.0, 0.5, 2, 1, 1))
    key = cpu_key()
    assert cost.cached_timing(key) is None and not calls  # looking does not measure
    first = cost.step_timing(key)
    assert cost.step_timing(key) is first and cost.cached_timing(key) is first
    cost.step_timing(cpu_key(batch=16))
    assert calls == [key, cpu_key(batch=16)]


def work(**kw) -> Workload:
    values = dict(train_images=100, val_images=20, images_missing=0, batch_size=10,
                  steps_per_epoch=10, capped=False,
                  phases=(PhaseWork("head", True, 3), PhaseWork("finetune", False, 5)),
                  val_every=1, max_minutes=None)
    return Workload(**{**values, **kw})


def test_the_estimate_from_a_step_and_its_forward_pass():
    timing = StepTiming(cpu_key(batch=10), step_s=2.0, forward_s=0.5, measured_batch=2,
                        warmup_steps=1, timed_steps=1)
    est = cost.estimate(work(), timing)
    # head: 100 images x 0.05 s (a forward pass) + 20 val x 0.05; finetune: 100 x 0.2 + 1
    assert est.epoch_s == pytest.approx({"head": 6.0, "finetune": 21.0})
    assert est.run_s == pytest.approx(3 * 6 + 5 * 21) and est.warnings() == []
    capped = cost.estimate(work(steps_per_epoch=5, capped=True), timing)
    assert capped.epoch_s["finetune"] == pytest.approx(50 * 0.2 + 1)
    rare_val = cost.estimate(work(val_every=2), timing)
    assert rare_val.epoch_s["head"] == pytest.approx(5.5)
    budget = cost.estimate(work(max_minutes=1.0), timing)
    assert budget.wall_s == 60 and budget.run_s == pytest.approx(123)


def test_long_runs_are_named():
    slow = StepTiming(cpu_key(batch=10), step_s=400.0, forward_s=100.0, measured_batch=2,
                      warmup_steps=1, timed_steps=1)
    est = cost.estimate(work(), slow)  # finetune epoch: 100 x 40 s + 20 x 10 s = 4200 s
    said = est.warnings()
    assert len(said) == 1 and "1h 10m per epoch (over 1 hour)" in said[0]
    days = cost.estimate(work(phases=(PhaseWork("full", False, 25),)), slow)
    assert any("1.2 days for the whole run" in w for w in days.warnings())
    stopped = cost.estimate(work(phases=(PhaseWork("full", False, 25),), max_minutes=600), slow)
    assert not any("days" in w for w in stopped.warnings())  # the budget ends it in 10 h


def test_the_words_say_where_the_numbers_come_from():
    w = work(steps_per_epoch=5, capped=True, images_missing=7)
    text = cost.describe_steps(w)
    assert "5 steps per epoch" in text and "capped by max steps" in text
    assert "At most 8 epochs (3 head + 5 finetune)" in text and "7 images" in text
    timing = StepTiming(cpu_key(batch=10), 0.25, 0.1, 2, 1, 1)
    assert "250 ms per step" in cost.describe_time(None, timing, None)
