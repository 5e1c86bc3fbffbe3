"""cxr/synth/generate.py (`cxr synth`): the synthetic dataset has NIH's layout, is reproducible
and refuses to overwrite what it did not write. Tiny datasets (12 patients, 64 px) keep this
fast."""
from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr.cli import main as cli_main
from cxr.labels import FINDINGS, finding_index, parse_labels
from cxr.synth.generate import BBOX_HEADER, ENTRY_HEADER, OutputExistsError, generate_dataset

FILES = ("Data_Entry_2017.csv", "train_val_list.txt", "test_list.txt", "BBox_List_2017.csv",
         "README.md")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "tiny"
    generate_dataset(out, patients=12, size=64, seed=1, workers=1)
    return out


def _rows(path: Path) -> list[list[str]]:
    return [line.split(",") for line in path.read_text().splitlines()[1:]]


def _boxes(root: Path) -> dict[str, list[tuple[str, float, float, float, float]]]:
    out: dict[str, list] = {}
    for image, label, x, y, w, h in _rows(root / "BBox_List_2017.csv"):
        out.setdefault(image, []).append((label, float(x), float(y), float(w), float(h)))
    return out


def test_layout_matches_nih(tiny):
    for name in FILES:
        assert (tiny / name).is_file(), name
    lines = (tiny / "Data_Entry_2017.csv").read_text().splitlines()
    assert lines[0] == ENTRY_HEADER
    assert (tiny / "BBox_List_2017.csv").read_text().splitlines()[0] == BBOX_HEADER
    rows = _rows(tiny / "Data_Entry_2017.csv")
    assert all(len(r) == 11 for r in rows)  # the bracketed headers hide two extra columns
    pngs = sorted(p.name for p in (tiny / "images").glob("*.png"))
    assert pngs == sorted(r[0] for r in rows)
    for image, labels, follow_up, patient, age, sex, view, w, h, sx, sy in rows:
        assert re.fullmatch(r"\d{8}_\d{3}\.png", image)
        assert image == f"{int(patient):08d}_{int(follow_up):03d}.png"
        parse_labels(labels)  # known labels only
        assert int(age) > 0 and sex in ("M", "F") and view in ("PA", "AP")
        assert (int(w), int(h)) == (64, 64) and float(sx) == float(sy) > 0
    with Image.open(tiny / "images" / pngs[0]) as im:
        assert im.mode == "L" and im.size == (64, 64)
    readme = (tiny / "README.md").read_text()
    assert "Synthetic" in readme and "not for any clinical use" in readme and "--seed 1" in readme


def test_headers_match_the_real_files(tiny, nih_dir):
    with gzip.open(nih_dir / "Data_Entry_2017_v2020.csv.gz", "rt") as f:
        assert f.readline().rstrip("\r\n") == ENTRY_HEADER
    with gzip.open(nih_dir / "BBox_List_2017.csv.gz", "rt") as f:
        assert f.readline().rstrip("\r\n") == BBOX_HEADER


def test_same_seed_same_bytes_any_workers_other_seed_differs(tiny, tmp_path):
    again = tmp_path / "again"
    generate_dataset(again, patients=12, size=64, seed=1, workers=2)  # parallel this time
    names = [*FILES, *(f"images/{p.name}" for p in (tiny / "images").glob("*.png"))]
    for name in names:
        assert (again / name).read_bytes() == (tiny / name).read_bytes(), name
    other = tmp_path / "other"
    generate_dataset(other, patients=12, size=64, seed=2, workers=1)
    assert ((other / "Data_Entry_2017.csv").read_bytes()
            != (tiny / "Data_Entry_2017.csv").read_bytes())
    first = (tiny / "images" / "00000001_000.png").read_bytes()
    assert (other / "images" / "00000001_000.png").read_bytes() != first


def test_every_finding_has_labels_and_boxes(tiny):
    labels = np.stack([parse_labels(r[1]) for r in _rows(tiny / "Data_Entry_2017.csv")])
    assert labels.sum(axis=0).min() >= 1, dict(zip(FINDINGS, labels.sum(axis=0)))
    boxed = {label for boxes in _boxes(tiny).values() for label, *_ in boxes}
    assert "Infiltrate" in boxed  # NIH's spelling in the box list
    assert {FINDINGS[finding_index(name)] for name in boxed} == set(FINDINGS)


def test_boxes_belong_to_labelled_images_and_fit_inside(tiny):
    entry = {r[0]: parse_labels(r[1]) for r in _rows(tiny / "Data_Entry_2017.csv")}
    for image, boxes in _boxes(tiny).items():
        for label, x, y, w, h in boxes:
            assert entry[image][finding_index(label)] == 1, (image, label)
            assert 0 <= x and 0 <= y and w >= 1 and h >= 1 and x + w <= 64 and y + h <= 64


def test_split_is_patient_disjoint_and_covers_everything(tiny):
    train_val = (tiny / "train_val_list.txt").read_text().split()
    test = (tiny / "test_list.txt").read_text().split()
    all_images = [r[0] for r in _rows(tiny / "Data_Entry_2017.csv")]
    assert sorted(train_val + test) == sorted(all_images)
    patients = lambda names: {n.split("_")[0] for n in names}  # noqa: E731
    assert patients(train_val) and patients(test)
    assert not patients(train_val) & patients(test)


def test_refuses_to_overwrite_what_it_did_not_write(tiny, tmp_path):
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(OutputExistsError, match="not a `cxr synth` dataset"):
        generate_dataset(other, patients=2, size=32, workers=1)
    assert (other / "notes.txt").read_text() == "keep me"
    with pytest.raises(OutputExistsError, match="--force"):
        generate_dataset(tiny, patients=2, size=32, workers=1)
    with pytest.raises(ValueError, match="patients"):
        generate_dataset(tmp_path / "none", patients=0)


def test_cli_writes_and_replaces_with_force(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["synth", "--out", str(out), "--patients", "3", "--size", "32", "--workers", "1"]
    assert cli_main(args) == 0
    assert "synthetic images of 3 patients" in capsys.readouterr().out
    assert cli_main(args) == 1  # exists: a clear error, not a traceback
    assert "--force" in capsys.readouterr().err
    assert cli_main([*args, "--seed", "4", "--force"]) == 0
    assert "--seed 4" in (out / "README.md").read_text()


def test_metadata_reader_parses_it(tiny):
    metadata = pytest.importorskip("cxr.data.metadata")
    table = metadata.read_data_entry(tiny / "Data_Entry_2017.csv", images_root=tiny / "images",
                                     missing="error")
    rows = _rows(tiny / "Data_Entry_2017.csv")
    assert len(table) == len(rows) and (table["path"] != "").all()
    assert table[list(FINDINGS)].to_numpy().sum() == sum(parse_labels(r[1]).sum() for r in rows)
    boxes = metadata.read_bbox(tiny / "BBox_List_2017.csv")
    assert len(boxes) == sum(len(b) for b in _boxes(tiny).values())
    assert set(boxes["finding"]) == set(FINDINGS)
