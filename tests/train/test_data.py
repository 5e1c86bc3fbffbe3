"""cxr/train/data.py: the run's split (made, or copied and checked), the train/val tables, the
cache choice, and an epoch order that resumes exactly and splits cleanly over ranks."""
import json
import shutil

import numpy as np
import pytest
import torch

from cxr.data.layout import DatasetFiles
from cxr.data.metadata import read_data_entry
from cxr.labels import FINDINGS
from cxr.train import TrainConfig
from cxr.train import data as td


@pytest.fixture(scope="module")
def dataset(tiny_data):
    files = DatasetFiles.locate(tiny_data)
    return files, read_data_entry(files.data_entry, images_root=files.images_root, missing="keep")


def test_made_split_is_saved_in_the_run_and_reproducible(base_values, dataset, tmp_path):
    files, table = dataset
    cfg = TrainConfig(**base_values)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        assert td.write_split(cfg, files, table, tmp_path / name) == "made"
    assert ((tmp_path / "a" / "split.csv").read_bytes()
            == (tmp_path / "b" / "split.csv").read_bytes())
    info = td.read_split(tmp_path / "a", "made")
    assert set(info.frame["split"]) == {"train", "val", "test"}
    assert len(info.frame) == len(table)  # made from the metadata, every row
    summary = info.summary()
    assert summary["content_hash"] == json.loads((tmp_path / "a" / "split.json").read_text())[
        "content_hash"]
    assert (summary["strategy"], summary["seed"], summary["source"]) == ("patient", 0, "made")


def test_a_given_split_is_checked_then_copied(base_values, dataset, tmp_path):
    files, table = dataset
    made = tmp_path / "made"
    made.mkdir()
    td.write_split(TrainConfig(**base_values), files, table, made)
    saved = tmp_path / "saved" / "split.csv"
    saved.parent.mkdir()
    shutil.copyfile(made / "split.csv", saved)
    shutil.copyfile(made / "split.json", saved.with_suffix(".json"))
    run = tmp_path / "run"
    run.mkdir()
    cfg = TrainConfig(**{**base_values, "split_path": str(saved)})
    assert td.write_split(cfg, files, table, run) == str(saved.resolve())
    assert (run / "split.csv").read_bytes() == saved.read_bytes()
    saved.write_text(saved.read_text().replace(",val", ",train"))  # edited after it was made
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(ValueError, match="content_hash"):
        td.write_split(cfg, files, table, other)
    assert not (other / "split.csv").exists()


def test_tables_leave_out_missing_images_and_never_load_test(base_values, dataset, tmp_path):
    files, table = dataset
    td.write_split(TrainConfig(**base_values), files, table, tmp_path)
    split = td.read_split(tmp_path, "made")
    val_images = split.frame.loc[split.frame["split"] == "val", "image"]
    gone = table["image"].isin(val_images.iloc[:2])
    logged = []
    tables = td.split_tables(table.assign(path=np.where(gone, "", table["path"])), split,
                             logged.append)
    assert set(tables) == {"train", "val"}
    assert len(tables["val"]) == len(val_images) - 2 and not tables["val"]["path"].eq("").any()
    assert logged == [f"val: 2 of {len(val_images)} images are not on disk and are left out"]
    targets = td.targets_of(tables["train"])
    assert targets.dtype == np.float32 and targets.shape == (len(tables["train"]), len(FINDINGS))
    with pytest.raises(ValueError, match="the train split has no images on disk"):
        td.split_tables(table.assign(path=""), split, logged.append)


def test_cache_at_the_size_else_the_smallest_larger(tmp_path, monkeypatch):
    import cxr.data.cache
    monkeypatch.setattr(cxr.data.cache, "open_cache", lambda root, size: ("cache", size))
    assert td.find_cache(tmp_path, 128) is None
    (tmp_path / "cache").mkdir()
    for size in (64, 256, 512):
        (tmp_path / "cache" / f"images_{size}.json").write_text("{}")
    (tmp_path / "cache" / "images_x.json").write_text("{}")  # not a cache's name
    assert td.find_cache(tmp_path, 256) == ("cache", 256)
    assert td.find_cache(tmp_path, 128) == ("cache", 256)  # never upsample from 64
    assert td.find_cache(tmp_path, 1024) is None


def _epoch(sampler, epoch, skip=0):
    sampler.set_epoch(epoch, skip)
    return [i for e, i in sampler if e == epoch]


def test_epoch_order_resumes_exactly_and_is_capped():
    full = td.EpochSampler(50, batch_size=4, seed=3, rank=0, world=1)
    assert full.batches() == 13 and len(_epoch(full, 0)) == 50
    order = _epoch(full, 2)
    assert sorted(order) == list(range(50)) and order != _epoch(full, 1)  # reshuffled per epoch
    assert _epoch(td.EpochSampler(50, 4, seed=3, rank=0, world=1), 2) == order  # seed + epoch only
    assert _epoch(full, 2, skip=5) == order[20:]  # a resumed epoch continues where it stopped
    capped = td.EpochSampler(50, batch_size=4, seed=3, rank=0, world=1, max_batches=3)
    assert capped.batches() == 3 and _epoch(capped, 2) == order[:12] and len(capped) == 12


def test_ranks_share_an_epoch_without_overlap():
    ranks = [_epoch(td.EpochSampler(50, 4, seed=0, rank=r, world=2), 1) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 25 and not set(ranks[0]) & set(ranks[1])
    assert sorted(ranks[0] + ranks[1]) == list(range(50))


class _Items:
    epoch = 0

    def __len__(self):
        return 6

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __getitem__(self, i):
        return torch.tensor([self.epoch, i])


def test_loader_carries_the_epoch_and_leaves_the_global_rng_alone():
    sampler = td.EpochSampler(6, batch_size=3, seed=0, rank=0, world=1)
    loader = td.make_loader(td.EpochDataset(_Items()), 3, sampler=sampler, seed=0)
    sampler.set_epoch(4)
    torch.manual_seed(0)
    expected = torch.rand(1)
    torch.manual_seed(0)
    batches = list(loader)
    assert torch.rand(1) == expected  # iterating drew nothing from torch's global RNG
    assert torch.cat(batches)[:, 0].tolist() == [4] * 6
    assert sorted(torch.cat(batches)[:, 1].tolist()) == list(range(6))


def test_default_workers_leave_a_core_per_process(monkeypatch):
    monkeypatch.setattr(td.os, "cpu_count", lambda: 16)
    assert td.default_workers(1) == 8 and td.default_workers(4) == 3
    monkeypatch.setattr(td.os, "cpu_count", lambda: 2)
    assert td.default_workers(1) == 1 and td.default_workers(2) == 0


def test_gpu_augment_auto_is_on_for_cuda_with_a_cache_only():
    cuda, cpu, cache = torch.device("cuda"), torch.device("cpu"), object()
    assert td.use_gpu_augment("auto", cuda, cache)
    assert not td.use_gpu_augment("auto", cuda, None) and not td.use_gpu_augment("auto", cpu, cache)
    assert td.use_gpu_augment("on", cpu, cache) and not td.use_gpu_augment("off", cuda, cache)
    with pytest.raises(ValueError, match="gpu_augment=on.*cxr prepare"):
        td.use_gpu_augment("on", cuda, None)


def test_gpu_augment_is_a_checked_config_choice(base_values):
    assert TrainConfig(**base_values).gpu_augment == "auto"
    with pytest.raises(ValueError, match="gpu_augment"):
        TrainConfig(**{**base_values, "gpu_augment": "yes"})


def test_device_batch_moves_or_augments():
    from cxr.data.batch_transforms import BatchTransform
    x, y = torch.rand(2, 3, 8, 8), torch.rand(2, 14)
    got_x, got_y = td.device_batch((x, y), torch.device("cpu"), None, torch.channels_last)
    assert torch.equal(got_x, x) and got_x.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(got_y, y)
    images = torch.randint(0, 256, (2, 10, 10), dtype=torch.uint8)
    params = torch.tensor([[1.0, 10.0, 1.1, 0.05], [0.0, 0.0, 1.0, 0.0]], dtype=torch.float64)
    got_x, got_y = td.device_batch((images, params, y), torch.device("cpu"), BatchTransform(8))
    assert torch.equal(got_x, BatchTransform(8)(images, params)) and torch.equal(got_y, y)
    assert got_x.shape == (2, 3, 8, 8) and got_x.dtype == torch.float32
