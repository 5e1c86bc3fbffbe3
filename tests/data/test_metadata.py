"""cxr/data/metadata.py: both NIH Data_Entry versions, image indexing, the bbox list.

    OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/data/test_metadata.py -q
"""
from __future__ import annotations

import gzip
import os
import warnings

import numpy as np
import pytest

from cxr.data.metadata import (TABLE_COLUMNS, MetadataError, boxes_by_image, index_images,
                               read_bbox, read_data_entry)
from cxr.labels import FINDINGS, UnknownLabelError

# The two real headers, verbatim: the original ends with a comma (a 12th, empty column).
ORIGINAL_HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
                   "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],")
V2020_HEADER = ORIGINAL_HEADER[:-1]
ORIGINAL_ROWS = [  # unsorted on purpose; ages in years, months and days
    "00000002_000.png,No Finding,000,00000002,081Y,M,PA,2500,2048,0.171,0.171",
    "00000001_001.png,Cardiomegaly|Emphysema,001,00000001,058Y,M,PA,2894,2729,0.143,0.143",
    "00000001_000.png,Cardiomegaly,000,00000001,058Y,M,PA,2682,2749,0.143,0.143",
    "00000003_000.png,Hernia,000,00000003,011M,F,AP,2582,2991,0.143,0.143",
    "00000004_000.png,Infiltration|Mass,000,00000004,002D,F,AP,2048,2500,0.168,0.168",
]
V2020_ROWS = [
    "00000002_000.png,No Finding,0,2,81,M,PA,2500,2048,0.171,0.171",
    "00000001_001.png,Cardiomegaly|Emphysema,1,1,58,M,PA,2894,2729,0.14300000000000002,0.143",
    "00000001_000.png,Cardiomegaly,0,1,57,M,PA,2682,2749,0.143,0.143",
    "00000003_000.png,Hernia,0,3,1,F,AP,2582,2991,0.143,0.143",
    "00000004_000.png,Infiltration|Mass,0,4,0,F,AP,2048,2500,0.168,0.168",
]
NAMES = sorted(row.split(",")[0] for row in V2020_ROWS)
BBOX_HEADER = "Image Index,Finding Label,Bbox [x,y,w,h],,,"


def _write(path, header, rows):
    text = "\n".join([header, *rows]) + "\n"
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def _images(root, names):
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        (root / name).write_bytes(b"\x89PNG placeholder")  # indexing never opens the file
    return root


@pytest.mark.parametrize("name, header, rows", [
    ("Data_Entry_2017.csv", ORIGINAL_HEADER, ORIGINAL_ROWS),
    ("Data_Entry_2017_original.csv.gz", ORIGINAL_HEADER, ORIGINAL_ROWS),
    ("Data_Entry_2017_v2020.csv.gz", V2020_HEADER, V2020_ROWS),
    ("Data_Entry_2017.csv", V2020_HEADER, V2020_ROWS),
])
def test_both_versions_read_into_the_same_table(tmp_path, name, header, rows):
    table = read_data_entry(_write(tmp_path / name, header, rows))
    assert tuple(table.columns) == TABLE_COLUMNS
    assert list(table["image"]) == NAMES
    assert list(table["patient"]) == [1, 1, 2, 3, 4]
    assert list(table["follow_up"]) == [0, 1, 0, 0, 0]
    assert list(table["sex"]) == ["M", "M", "M", "F", "F"]
    assert list(table["view"]) == ["PA", "PA", "PA", "AP", "AP"]
    assert (table["path"] == "").all()
    assert all(table[f].dtype == np.uint8 for f in FINDINGS)
    row = table.set_index("image").loc["00000001_001.png"]
    assert [f for f in FINDINGS if row[f]] == ["Cardiomegaly", "Emphysema"]
    assert table.set_index("image").loc["00000002_000.png", list(FINDINGS)].sum() == 0
    assert int(table[list(FINDINGS)].to_numpy().sum()) == 6


def test_original_ages_in_years_months_and_days(tmp_path):
    table = read_data_entry(_write(tmp_path / "d.csv", ORIGINAL_HEADER, ORIGINAL_ROWS))
    ages = dict(zip(table["image"], table["age"]))
    assert ages["00000001_000.png"] == 58.0
    assert ages["00000003_000.png"] == pytest.approx(11 / 12)
    assert ages["00000004_000.png"] == pytest.approx(2 / 365.25)


def test_unknown_label_names_the_row_the_image_and_the_string(tmp_path):
    rows = [*V2020_ROWS[:3], V2020_ROWS[3].replace("Hernia", "Hernia|Fracture")]
    with pytest.raises(UnknownLabelError) as err:
        read_data_entry(_write(tmp_path / "d.csv", V2020_HEADER, rows))
    assert "line 5" in str(err.value) and "00000003_000.png" in str(err.value)
    assert "'Fracture'" in str(err.value) and "d.csv" in str(err.value)


def test_wrong_columns_name_the_file_and_the_missing_columns(tmp_path):
    header = V2020_HEADER.replace("Patient ID", "PatientID")
    with pytest.raises(MetadataError, match=r"d\.csv: missing column\(s\) \['Patient ID'\]"):
        read_data_entry(_write(tmp_path / "d.csv", header, V2020_ROWS))


@pytest.mark.parametrize("old, new, message", [
    (",81,M,", ",eighty,M,", r"line 2 \(00000002_000\.png\): Patient Age 'eighty'"),
    (",81,M,", ",81,X,", r"line 2 \(00000002_000\.png\): Patient Gender 'X'"),
    (",81,M,PA", ",81,M,LL", r"line 2 \(00000002_000\.png\): View Position 'LL'"),
    (",0,2,81", ",0,two,81", r"line 2 \(00000002_000\.png\): Patient ID 'two'"),
])
def test_bad_values_name_the_row(tmp_path, old, new, message):
    rows = [V2020_ROWS[0].replace(old, new), *V2020_ROWS[1:]]
    with pytest.raises(MetadataError, match=message):
        read_data_entry(_write(tmp_path / "d.csv", V2020_HEADER, rows))


def test_duplicate_image_is_an_error(tmp_path):
    with pytest.raises(MetadataError, match="listed twice"):
        read_data_entry(_write(tmp_path / "d.csv", V2020_HEADER, [*V2020_ROWS, V2020_ROWS[0]]))


def test_paths_from_nested_nih_image_folders(tmp_path):
    csv = _write(tmp_path / "d.csv", V2020_HEADER, V2020_ROWS)
    _images(tmp_path / "images_001" / "images", NAMES[:3])
    _images(tmp_path / "images_002" / "images", NAMES[3:])
    table = read_data_entry(csv, images_root=tmp_path, missing="error")
    assert all(os.path.isfile(p) and p.endswith(n) for n, p in zip(table["image"], table["path"]))
    assert "images_002" in table.set_index("image").loc[NAMES[4], "path"]


def test_missing_images_dropped_with_a_warning_that_counts_and_names_them(tmp_path):
    csv = _write(tmp_path / "d.csv", V2020_HEADER, V2020_ROWS)
    _images(tmp_path / "images", NAMES[:2])
    with pytest.warns(UserWarning, match=r"3 of 5 images .* \(first: 00000002_000\.png, "
                                         r"00000003_000\.png, 00000004_000\.png\); dropped"):
        table = read_data_entry(csv, images_root=tmp_path / "images", missing="drop")
    assert list(table["image"]) == NAMES[:2]


def test_missing_images_error_or_keep(tmp_path):
    csv = _write(tmp_path / "d.csv", V2020_HEADER, V2020_ROWS)
    _images(tmp_path / "images", NAMES[:4])
    with pytest.raises(FileNotFoundError, match=r"1 of 5 images .* \(first: 00000004_000\.png\)"):
        read_data_entry(csv, images_root=tmp_path / "images", missing="error")
    with pytest.warns(UserWarning, match="kept with an empty path"):
        table = read_data_entry(csv, images_root=tmp_path / "images", missing="keep")
    assert len(table) == 5 and (table["path"] == "").sum() == 1


def test_metadata_alone_checks_no_images(tmp_path):
    csv = _write(tmp_path / "d.csv", V2020_HEADER, V2020_ROWS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = read_data_entry(csv, images_root=None, missing="error")
    assert len(table) == 5 and (table["path"] == "").all()


def test_index_images_finds_image_extensions_at_any_depth(tmp_path):
    for rel in ("a.png", "x/b.JPG", "x/y/c.jpeg", "x/y/z/d.dcm", "notes.txt", ".hidden/e.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    index = index_images(tmp_path)
    assert sorted(index) == ["a.png", "b.JPG", "c.jpeg", "d.dcm"]
    assert index["d.dcm"] == str(tmp_path / "x/y/z/d.dcm")


def test_index_images_refuses_the_same_name_twice(tmp_path):
    _images(tmp_path / "images_001", ["a.png"])
    _images(tmp_path / "images_002", ["a.png"])
    with pytest.raises(MetadataError, match="'a.png' found twice"):
        index_images(tmp_path)


@pytest.mark.parametrize("name", ["BBox_List_2017.csv", "BBox_List_2017.csv.gz"])
def test_bbox_nih_quirks(tmp_path, name):
    rows = ["00013118_008.png,Atelectasis,225.08,547.01,86.77,79.18",
            "00014716_007.png,Infiltrate,686.1,131.5,185.4,313.4",
            "00013118_008.png,Effusion,10,20,30,40"]
    df = read_bbox(_write(tmp_path / name, BBOX_HEADER, rows))
    assert list(df.columns) == ["image", "finding", "x", "y", "w", "h"]
    assert list(df["finding"]) == ["Atelectasis", "Infiltration", "Effusion"]
    assert df.loc[0, ["x", "y", "w", "h"]].tolist() == [225.08, 547.01, 86.77, 79.18]
    boxes = boxes_by_image(df)
    assert boxes["00013118_008.png"] == [("Atelectasis", 225.08, 547.01, 86.77, 79.18),
                                         ("Effusion", 10.0, 20.0, 30.0, 40.0)]
    assert len(boxes["00014716_007.png"]) == 1


def test_bbox_errors_name_the_row(tmp_path):
    with pytest.raises(UnknownLabelError, match=r"b\.csv line 3 \(b\.png\).*'Fracture'"):
        read_bbox(_write(tmp_path / "b.csv", BBOX_HEADER,
                         ["a.png,Mass,1,2,3,4", "b.png,Fracture,1,2,3,4"]))
    with pytest.raises(MetadataError, match=r"line 2 \(a\.png\): box w 'wide'"):
        read_bbox(_write(tmp_path / "b.csv", BBOX_HEADER, ["a.png,Mass,1,2,wide,4"]))
    with pytest.raises(MetadataError, match="not NIH's bbox header"):
        read_bbox(_write(tmp_path / "b.csv", "image,label,x,y,w,h", ["a.png,Mass,1,2,3,4"]))


# --- the real tables (skip without ../shared/data/nih) --------------------------------------
V2020_COUNTS = {"Infiltration": 19894, "Effusion": 13317, "Atelectasis": 11559, "Nodule": 6331,
                "Mass": 5782, "Pneumothorax": 5302, "Consolidation": 4667,
                "Pleural_Thickening": 3385, "Cardiomegaly": 2776, "Emphysema": 2516,
                "Edema": 2303, "Fibrosis": 1686, "Pneumonia": 1431, "Hernia": 227}
# Counted in the original file with zcat | cut | tr | uniq -c: NIH's 2020 revision changed labels.
ORIGINAL_COUNTS = {**V2020_COUNTS, "Infiltration": 19870, "Effusion": 13307,
                   "Atelectasis": 11535, "Nodule": 6323, "Mass": 5746, "Pneumothorax": 5298,
                   "Cardiomegaly": 2772, "Pneumonia": 1353}


@pytest.fixture(scope="module", params=[("v2020", V2020_COUNTS, 60361),
                                        ("original", ORIGINAL_COUNTS, 60412)], ids=lambda p: p[0])
def real(request, nih_dir):
    version, counts, no_finding = request.param
    return read_data_entry(nih_dir / f"Data_Entry_2017_{version}.csv.gz"), counts, no_finding


def test_real_table_counts(real):
    table, counts, no_finding = real
    assert len(table) == 112_120 and table["patient"].nunique() == 30_805
    assert table["image"].is_unique and table["image"].is_monotonic_increasing
    assert {f: int(table[f].sum()) for f in FINDINGS} == counts
    assert int((table[list(FINDINGS)].sum(axis=1) == 0).sum()) == no_finding
    assert table["age"].min() >= 0 and set(table["sex"]) == {"M", "F"}


def test_real_original_ages_in_months_and_days_become_fractions(nih_dir):
    table = read_data_entry(nih_dir / "Data_Entry_2017_original.csv.gz")
    # 26 ages are in months (004M to 023M, none a whole number of years) and 1 in days
    fractional = table["age"] != table["age"].round()
    assert fractional.sum() == 27 and (table.loc[fractional, "age"] < 2).all()
    assert table.loc[table["image"] == "00000001_000.png", "age"].item() == 58.0


def test_real_images_keep_their_rows(nih_dir):
    with pytest.warns(UserWarning, match="112064 of 112120 images"):
        table = read_data_entry(nih_dir / "Data_Entry_2017_v2020.csv.gz",
                                images_root=nih_dir / "images", missing="drop")
    assert len(table) == 56 and all(os.path.isfile(p) for p in table["path"])


def test_real_bbox_list(nih_dir):
    df = read_bbox(nih_dir / "BBox_List_2017.csv.gz")
    assert len(df) == 984 and df["image"].nunique() == 880
    assert df["finding"].nunique() == 8 and (df["finding"] == "Infiltration").sum() == 123
    assert (df[["w", "h"]] > 0).all().all() and df["x"].max() < 1024
