"""cxr/data/splits.py: leak-free patient and official splits, reports, saving with a hash, CLI.

    OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/data/test_splits.py -q
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest

from cxr.cli import main as cxr_main
from cxr.data import splits
from cxr.data.metadata import read_data_entry
from cxr.data.splits import (attach_split, load_split, make_split, patient_overlap, save_split,
                             split_report)
from cxr.labels import FINDINGS, format_labels


def _table(n_patients=300, seed=0) -> pd.DataFrame:
    """A metadata table: 1-8 images per patient, findings at NIH-like, decreasing prevalences."""
    rng = np.random.default_rng(seed)
    prevalence = np.linspace(0.2, 0.03, len(FINDINGS))
    rows = []
    for patient in range(1, n_patients + 1):
        for follow_up in range(int(rng.integers(1, 9))):
            labels = (rng.random(len(FINDINGS)) < prevalence).astype(np.uint8)
            rows.append({"image": f"{patient:08d}_{follow_up:03d}.png", "path": "",
                         "patient": patient, "follow_up": follow_up, "age": 50.0, "sex": "F",
                         "view": "PA", **dict(zip(FINDINGS, labels))})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def table():
    return _table()


def _official_lists(table, test_share=0.25):
    """NIH-style lists: the last quarter of patients is the test set."""
    cut = table["patient"].max() * (1 - test_share)
    test = table["patient"] > cut
    return list(table.loc[~test, "image"]), list(table.loc[test, "image"])


def test_patient_split_keeps_patients_whole(table):
    split = make_split(table, "patient", seed=0)
    assert list(split.columns) == ["image", "patient", "split"]
    assert sorted(split["image"]) == sorted(table["image"])
    assert split["image"].is_monotonic_increasing
    assert split.groupby("patient")["split"].nunique().max() == 1
    assert patient_overlap(split) == {"train-val": 0, "train-test": 0, "val-test": 0}
    shares = split.drop_duplicates("patient")["split"].value_counts(normalize=True)
    assert shares["train"] == pytest.approx(0.7, abs=0.03)
    assert shares["val"] == pytest.approx(0.1, abs=0.03)
    assert shares["test"] == pytest.approx(0.2, abs=0.03)


def test_seeded_reproducible_and_leaves_the_global_rng_alone(table):
    np.random.seed(123)
    state = np.random.get_state()[1].copy()
    first = make_split(table, "patient", seed=7)
    assert np.array_equal(np.random.get_state()[1], state)
    pd.testing.assert_frame_equal(first, make_split(table, "patient", seed=7))
    other = make_split(table, "patient", seed=8)
    assert (first["split"] != other["split"]).any()


def test_patient_fraction_keeps_whole_patients(table):
    split = make_split(table, "patient", seed=0, patient_fraction=0.5)
    kept = set(split["patient"])
    assert len(kept) == pytest.approx(150, abs=5)
    assert len(split) == table["patient"].isin(kept).sum()  # every image of a kept patient
    assert set(split["split"]) == {"train", "val", "test"}


def test_official_split_uses_the_test_list_and_carves_val_by_patient(table):
    train_val, test = _official_lists(table)
    split = make_split(table, "official", seed=0, train_val_list=train_val, test_list=test)
    assert set(split.loc[split["split"] == "test", "image"]) == set(test)
    assert set(split.loc[split["split"] != "test", "image"]) == set(train_val)
    val_patients = split.loc[split["split"] == "val", "patient"].nunique()
    train_val_patients = split.loc[split["split"] != "test", "patient"].nunique()
    assert val_patients / train_val_patients == pytest.approx(0.1 / 0.8, abs=0.03)
    assert sum(patient_overlap(split).values()) == 0


def test_official_split_reads_list_files(table, tmp_path):
    train_val, test = _official_lists(table)
    (tmp_path / "tv.txt").write_text("\n".join(train_val) + "\n")
    (tmp_path / "t.txt").write_text("\n".join(test) + "\n")
    from_files = make_split(table, "official", train_val_list=tmp_path / "tv.txt",
                            test_list=tmp_path / "t.txt")
    pd.testing.assert_frame_equal(from_files, make_split(table, "official",
                                                         train_val_list=train_val, test_list=test))


def test_official_lists_must_cover_the_table_and_be_patient_disjoint(table):
    train_val, test = _official_lists(table)
    with pytest.raises(ValueError, match=r"1 image\(s\) are in neither .*\(first: 00000001_000"):
        make_split(table, "official", train_val_list=train_val[1:], test_list=test)
    with pytest.raises(ValueError, match=r"1 patient\(s\) in both train_val and test"):
        moved = [n for n in train_val if n.startswith("00000001_")][:1]
        make_split(table, "official", test_list=test + moved,
                   train_val_list=[n for n in train_val if n not in moved])
    with pytest.raises(FileNotFoundError, match="test_list.txt"):
        make_split(table, "official", train_val_list=train_val)


@pytest.mark.parametrize("kwargs, message", [
    ({"strategy": "random"}, "strategy"),
    ({"seed": -1}, "seed"),
    ({"fractions": (0.8, 0.0, 0.2)}, "fractions"),
    ({"fractions": (0.7, 0.2, 0.2)}, "fractions"),
    ({"patient_fraction": 0.0}, "patient_fraction"),
])
def test_bad_arguments(table, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_split(table, **kwargs)


def test_report_counts_prevalence_and_overlap(table):
    split = make_split(table, "patient", seed=0)
    report = split_report(split, table)
    assert sum(c["images"] for c in report["counts"].values()) == len(table)
    assert sum(c["patients"] for c in report["counts"].values()) == table["patient"].nunique()
    test_rows = table[table["image"].isin(split.loc[split["split"] == "test", "image"])]
    assert report["prevalence_images"]["Atelectasis"]["test"] == pytest.approx(
        test_rows["Atelectasis"].mean())
    assert report["prevalence_patients"]["Atelectasis"]["test"] == pytest.approx(
        test_rows.groupby("patient")["Atelectasis"].max().mean())
    no_finding = (test_rows[list(FINDINGS)].sum(axis=1) == 0).mean()
    assert report["prevalence_images"]["No Finding"]["test"] == pytest.approx(no_finding)
    assert report["patient_overlap"] == {"train-val": 0, "train-test": 0, "val-test": 0}
    json.dumps(report)  # JSON-safe for the sidecar


def test_report_finds_a_leak(table):
    leaky = make_split(table, "patient", seed=0)
    # the train patient with the most images: move one of them to test
    patient = leaky.loc[leaky["split"] == "train", "patient"].value_counts().index[0]
    leaky.loc[leaky.index[leaky["patient"] == patient][0], "split"] = "test"
    assert split_report(leaky, table)["patient_overlap"]["train-test"] == 1


def test_split_of_other_data_is_an_error(table):
    split = make_split(table, "patient", seed=0)
    with pytest.raises(ValueError, match=r"2 image\(s\) of the split are not in the metadata"):
        attach_split(table.iloc[2:], split)
    moved = split.copy()
    moved.loc[0, "patient"] = 9999
    with pytest.raises(ValueError, match="another patient id"):
        split_report(moved, table)


def _meta(table, split):
    return {"strategy": "patient", "seed": 0, "patient_fraction": 1.0,
            "fractions": [0.7, 0.1, 0.2], "data_version": "test sha256:0",
            "report": split_report(split, table)}


def test_save_and_load_round_trip(table, tmp_path):
    split = make_split(table, "patient", seed=0)
    path = tmp_path / "nested" / "s.csv"
    sidecar = save_split(split, path, _meta(table, split))
    loaded, meta = load_split(path)
    pd.testing.assert_frame_equal(loaded, split, check_dtype=False)
    assert meta == sidecar == json.loads(path.with_suffix(".json").read_text())
    assert meta["content_hash"] and meta["strategy"] == "patient"
    assert sorted(p.name for p in path.parent.iterdir()) == ["s.csv", "s.json"]  # no temp left


def test_load_refuses_an_edited_split(table, tmp_path):
    split = make_split(table, "patient", seed=0)
    path = tmp_path / "s.csv"
    save_split(split, path, _meta(table, split))
    text = path.read_text()
    path.write_text(text.replace(",test\n", ",train\n", 1))
    with pytest.raises(ValueError, match="edited after it was made"):
        load_split(path)
    path.with_suffix(".json").unlink()
    with pytest.raises(FileNotFoundError, match="no sidecar"):
        load_split(path)


def test_save_needs_the_whole_sidecar(table, tmp_path):
    split = make_split(table, "patient", seed=0)
    with pytest.raises(ValueError, match=r"lacks \['data_version'\]"):
        meta = _meta(table, split)
        del meta["data_version"]
        save_split(split, tmp_path / "s.csv", meta)


def _dataset_dir(tmp_path, table):
    """A ChestX-ray14 folder with metadata and lists but no images."""
    lines = ["Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
             "View Position"]
    for row in table.itertuples(index=False):
        labels = format_labels([getattr(row, f) for f in FINDINGS])
        lines.append(f"{row.image},{labels},{row.follow_up},{row.patient},50,F,PA")
    (tmp_path / "Data_Entry_2017.csv").write_text("\n".join(lines) + "\n")
    train_val, test = _official_lists(table)
    (tmp_path / "train_val_list.txt").write_text("\n".join(train_val) + "\n")
    (tmp_path / "test_list.txt").write_text("\n".join(test) + "\n")
    return tmp_path


def test_cli_writes_the_default_path_from_metadata_alone(table, tmp_path, capsys):
    data = _dataset_dir(tmp_path, table)
    assert cxr_main(["split", "--data", str(data), "--strategy", "patient", "--seed", "3",
                     "--patient-fraction", "0.5"]) == 0
    split, meta = load_split(data / "splits" / "patient_seed3_pf0.5.csv")
    assert (meta["strategy"], meta["seed"], meta["patient_fraction"]) == ("patient", 3, 0.5)
    assert meta["data_version"].startswith("Data_Entry_2017.csv sha256:")
    assert split["patient"].nunique() == pytest.approx(150, abs=5)
    assert "patient overlap between splits: 0" in capsys.readouterr().out
    assert cxr_main(["split", "--data", str(data), "--strategy", "official"]) == 0
    assert (data / "splits" / "official_seed0.csv").is_file()


def test_cli_bad_input_is_a_clear_error(tmp_path, capsys):
    assert cxr_main(["split", "--data", str(tmp_path)]) == 1
    assert "no ChestX-ray14 metadata" in capsys.readouterr().err


def test_cli_parser_defaults():
    parser = argparse.ArgumentParser()
    splits.add_arguments(parser)
    args = parser.parse_args(["--data", "d"])
    assert (args.strategy, args.seed, args.patient_fraction, args.out) == ("patient", 0, 1.0, None)


# --- the real table (skip without ../shared/data/nih) ---------------------------------------
@pytest.fixture(scope="module")
def real(nih_dir):
    return read_data_entry(nih_dir / "Data_Entry_2017_v2020.csv.gz"), nih_dir


def _gap_pp(prevalence: dict, names) -> float:
    return 100 * max(max(prevalence[n].values()) - min(prevalence[n].values()) for n in names)


def test_real_patient_split_is_leak_free_and_balanced(real):
    table, _ = real
    split = make_split(table, "patient", seed=0)
    report = split_report(split, table)
    assert len(split) == 112_120
    assert report["patient_overlap"] == {"train-val": 0, "train-test": 0, "val-test": 0}
    assert sum(c["patients"] for c in report["counts"].values()) == 30_805
    # Among patients (what is stratified) the 14 findings agree within 0.5 points; among
    # images, patients with many images make ~1 point normal.
    assert _gap_pp(report["prevalence_patients"], FINDINGS) < 0.5
    assert _gap_pp(report["prevalence_images"], FINDINGS) < 2.0
    assert report["max_gap_pp"]["patients"] == pytest.approx(
        _gap_pp(report["prevalence_patients"], FINDINGS), abs=1e-3)
    images = {s: c["images"] / len(table) for s, c in report["counts"].items()}
    assert images == pytest.approx({"train": 0.7, "val": 0.1, "test": 0.2}, abs=0.01)


def test_real_official_split(real):
    table, nih_dir = real
    split = make_split(table, "official", seed=0, train_val_list=nih_dir / "train_val_list.txt",
                       test_list=nih_dir / "test_list.txt")
    report = split_report(split, table)
    assert report["counts"]["test"] == {"images": 25_596, "patients": 2_797}
    assert report["counts"]["train"]["patients"] + report["counts"]["val"]["patients"] == 28_008
    assert report["patient_overlap"] == {"train-val": 0, "train-test": 0, "val-test": 0}
