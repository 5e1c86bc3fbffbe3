"""cxr/data/layout.py: finding the files of a ChestX-ray14 folder, and the data version.

    OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/data/test_layout.py -q
"""
from __future__ import annotations

import gzip
import os
import re

import pytest

from cxr.data.layout import DatasetFiles, data_version

HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
          "View Position\n")


def _touch(path, text=HEADER):
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def test_locate_finds_every_file(tmp_path):
    entry = _touch(tmp_path / "Data_Entry_2017.csv")
    _touch(tmp_path / "train_val_list.txt", "a.png\n")
    _touch(tmp_path / "test_list.txt", "b.png\n")
    _touch(tmp_path / "BBox_List_2017.csv.gz", "Image Index,Finding Label,Bbox [x,y,w,h],,,\n")
    (tmp_path / "images").mkdir()
    files = DatasetFiles.locate(tmp_path)
    assert files.data_entry == entry.resolve()
    assert files.train_val_list.name == "train_val_list.txt"
    assert files.test_list.name == "test_list.txt"
    assert files.bbox.name == "BBox_List_2017.csv.gz"
    assert files.images_root == (tmp_path / "images").resolve()
    assert files.splits_dir == tmp_path.resolve() / "splits"
    assert files.cache_dir == tmp_path.resolve() / "cache"


def test_optional_files_are_none_when_absent(tmp_path):
    _touch(tmp_path / "Data_Entry_2017_v2020.csv.gz")
    files = DatasetFiles.locate(tmp_path)
    assert files.data_entry.name == "Data_Entry_2017_v2020.csv.gz"
    assert (files.train_val_list, files.test_list, files.bbox, files.images_root) == (None,) * 4


@pytest.mark.parametrize("present, chosen", [
    (["Data_Entry_2017_v2020.csv.gz", "Data_Entry_2017.csv"], "Data_Entry_2017.csv"),
    (["Data_Entry_2017_original.csv.gz", "Data_Entry_2017.csv.gz"], "Data_Entry_2017.csv.gz"),
    (["Data_Entry_2017_original.csv.gz", "Data_Entry_2017_v2020.csv.gz"],
     "Data_Entry_2017_v2020.csv.gz"),
    (["Data_Entry_2017_original.csv"], "Data_Entry_2017_original.csv"),
])
def test_prefers_the_exact_name_then_v2020(tmp_path, present, chosen):
    for name in present:
        _touch(tmp_path / name)
    assert DatasetFiles.locate(tmp_path).data_entry.name == chosen


def test_images_root_is_the_folder_when_nih_images_folders_are_there(tmp_path):
    _touch(tmp_path / "Data_Entry_2017.csv")
    (tmp_path / "images_001" / "images").mkdir(parents=True)
    assert DatasetFiles.locate(tmp_path).images_root == tmp_path.resolve()


def test_missing_metadata_names_the_folder_and_the_file(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(FileNotFoundError, match=r"Data_Entry_2017\.csv") as err:
        DatasetFiles.locate(tmp_path)
    assert str(tmp_path) in str(err.value)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        DatasetFiles.locate(tmp_path / "nowhere")


def test_data_version_names_the_file_and_follows_its_content(tmp_path):
    path = _touch(tmp_path / "Data_Entry_2017.csv", HEADER + "x\n")
    first = data_version(path)
    assert re.fullmatch(r"Data_Entry_2017\.csv sha256:[0-9a-f]{12}", first)
    assert data_version(path) == first
    path.write_text(HEADER + "y\n")  # same size, new content: the cache must not hide it
    assert data_version(path) != first


def test_synthetic_is_what_cxr_synth_wrote(tmp_path):
    from cxr.data.layout import is_synthetic, trained_on_synthetic
    from cxr.synth.generate import generate_dataset
    generate_dataset(tmp_path / "synth", patients=2, size=32, workers=1)
    assert DatasetFiles.locate(tmp_path / "synth").synthetic and is_synthetic(tmp_path / "synth")
    (tmp_path / "nih").mkdir()
    (tmp_path / "nih" / "README.md").write_text("# my notes on ChestX-ray14\n")
    assert not is_synthetic(tmp_path / "nih") and not is_synthetic(tmp_path / "absent")
    # the checkpoint's own key first; older checkpoints: their config's data_dir, if it is here
    synth = {"config": {"data_dir": str(tmp_path / "synth")}}
    assert trained_on_synthetic({**synth, "synthetic": False}) is False
    assert trained_on_synthetic(synth) is True
    assert trained_on_synthetic({"config": {"data_dir": str(tmp_path / "nih")}}) is False
    assert trained_on_synthetic({"config": {"data_dir": str(tmp_path / "gone")}}) is None
    assert trained_on_synthetic({}) is None


def test_real_nih_folder(nih_dir):
    files = DatasetFiles.locate(nih_dir)
    assert not files.synthetic
    assert files.data_entry.name == "Data_Entry_2017_v2020.csv.gz"
    assert files.bbox.name == "BBox_List_2017.csv.gz"
    assert files.images_root.name == "images"
    assert files.train_val_list is not None and files.test_list is not None


def test_data_version_cache_follows_a_rewrite_with_an_old_mtime(tmp_path):
    path = _touch(tmp_path / "Data_Entry_2017.csv", HEADER + "x\n")
    os.utime(path, (1_000_000_000, 1_000_000_000))
    first = data_version(path)  # cached now: the file is old
    path.write_text(HEADER + "yy\n")
    os.utime(path, (1_000_000_001, 1_000_000_001))
    assert data_version(path) != first
