"""Read ChestX-ray14 metadata (Data_Entry_2017*.csv) and the expert box list into tables.

Both NIH versions parse into the same table (see ARCHITECTURE.md, "Metadata table"):
the 2017 original (ages like `058Y`, a few in months `M` or days `D`, a trailing empty
column) and the 2020 revision (integer ages), gzipped or not.

    >>> from cxr.data.metadata import read_data_entry, read_bbox, boxes_by_image
    >>> table = read_data_entry("../shared/data/nih/Data_Entry_2017_v2020.csv.gz",
    ...                         images_root="../shared/data/nih/images", missing="drop")
    >>> boxes = boxes_by_image(read_bbox("../shared/data/nih/BBox_List_2017.csv.gz"))

`images_root=None` reads the metadata alone (empty `path`), as `cxr split` does.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from cxr.labels import FINDINGS, UnknownLabelError, finding_index, parse_labels

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".dcm")
TABLE_COLUMNS = ("image", "path", "patient", "follow_up", "age", "sex", "view", *FINDINGS)
# NIH column -> ours. The image-size and pixel-spacing columns are not needed.
_ENTRY_COLUMNS = {"Image Index": "image", "Finding Labels": "labels", "Follow-up #": "follow_up",
                  "Patient ID": "patient", "Patient Age": "age", "Patient Gender": "sex",
                  "View Position": "view"}
_AGE_UNITS = {"": 1.0, "Y": 1.0, "M": 1 / 12, "W": 7 / 365.25, "D": 1 / 365.25}
_BBOX_COLUMNS = ("image", "finding", "x", "y", "w", "h")


class MetadataError(ValueError):
    """A metadata file that does not have the expected columns or values."""


def read_data_entry(csv_path: str | Path, images_root: str | Path | None = None,
                    missing: str = "drop") -> pd.DataFrame:
    """Data_Entry_2017*.csv[.gz] -> metadata table sorted by image.

    missing: what to do with rows whose image is not under `images_root`: "drop" (warn),
    "error" (FileNotFoundError) or "keep" (warn, empty `path`). Ignored without images_root.
    """
    if missing not in ("drop", "error", "keep"):
        raise ValueError(f"missing must be 'drop', 'error' or 'keep', not {missing!r}")
    csv_path = Path(csv_path)
    raw = _read_raw(csv_path)
    where = _Where(csv_path, raw["image"])
    labels = _label_matrix(raw["labels"], where)
    table = pd.DataFrame({
        "image": raw["image"].to_numpy(dtype=object),
        "path": "",
        "patient": _to_int(raw["patient"], "Patient ID", where),
        "follow_up": _to_int(raw["follow_up"], "Follow-up #", where),
        "age": _ages(raw["age"], where),
        "sex": _choice(raw["sex"], ("M", "F"), "Patient Gender", where),
        "view": _choice(raw["view"], ("PA", "AP"), "View Position", where),
        **{name: labels[:, i] for i, name in enumerate(FINDINGS)},
    })
    where.refuse(table["image"].duplicated(), table["image"], "image", "is listed twice")
    if images_root is not None:
        table = _attach_paths(table, Path(images_root), missing, csv_path)
    return table.sort_values("image", kind="stable").reset_index(drop=True)


class _Where:
    """Names a row in error messages: file, line number (header is line 1) and image."""

    def __init__(self, csv_path: Path, images: pd.Series):
        self.csv_path, self.images = csv_path, images

    def __call__(self, row: int) -> str:
        return f"{self.csv_path} line {row + 2} ({self.images.iloc[row]})"

    def refuse(self, bad: pd.Series, values: pd.Series, what: str, problem: str) -> None:
        """MetadataError naming the first row where `bad` holds, its value and the problem."""
        if bad.any():
            row = int(np.argmax(bad.to_numpy()))
            raise MetadataError(f"{self(row)}: {what} {values.iloc[row]!r} {problem}")


def _read_raw(csv_path: Path) -> pd.DataFrame:
    # Everything as text: ages like '058Y' and ids like '00000001' are parsed below, with
    # errors that name the row. Compression is inferred from the .gz suffix.
    df = pd.read_csv(csv_path, dtype=str, keep_default_na=False, skipinitialspace=True)
    df.columns = [str(c).strip() for c in df.columns]
    absent = [c for c in _ENTRY_COLUMNS if c not in df.columns]
    if absent:
        found = [c for c in df.columns if c and not c.startswith("Unnamed:")]
        raise MetadataError(f"{csv_path}: missing column(s) {absent}; found {found}. Expected "
                            "NIH's Data_Entry_2017.csv header")
    raw = df[list(_ENTRY_COLUMNS)].rename(columns=_ENTRY_COLUMNS)
    return raw.apply(lambda col: col.fillna("").astype(str).str.strip())


def _label_matrix(texts: pd.Series, where: _Where) -> np.ndarray:
    # ~800 distinct label strings in 112,120 rows: parse each once.
    codes, uniques = pd.factorize(texts)
    vectors = []
    for code, text in enumerate(uniques):
        try:
            vectors.append(parse_labels(text))
        except UnknownLabelError:
            parse_labels(text, where=where(int(np.argmax(codes == code))))  # raises, naming the row
    if not vectors:
        return np.zeros((0, len(FINDINGS)), dtype=np.uint8)
    return np.stack(vectors)[codes]


def _to_int(values: pd.Series, column: str, where: _Where) -> np.ndarray:
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna() | (numbers != np.floor(numbers))
    where.refuse(bad, values, column, "is not an integer")
    return numbers.to_numpy().astype(np.int64)


def _ages(values: pd.Series, where: _Where) -> np.ndarray:
    """'058Y' -> 58.0, '011M' -> 0.917, '002D' -> 0.0055, '57' -> 57.0."""
    parts = values.str.upper().str.extract(r"^(\d+(?:\.\d+)?)\s*([YMWD]?)$")
    where.refuse(parts[0].isna(), values, "Patient Age", "is not a number of years (like 58 or "
                 "058Y; M, W, D for months, weeks, days)")
    return (parts[0].astype(float) * parts[1].map(_AGE_UNITS)).to_numpy(dtype=np.float64)


def _choice(values: pd.Series, allowed: tuple[str, ...], column: str, where: _Where):
    where.refuse(~values.isin(allowed), values, column, f"is not one of {allowed}")
    return values.to_numpy(dtype=object)


def _attach_paths(table: pd.DataFrame, root: Path, missing: str, csv_path: Path) -> pd.DataFrame:
    index = index_images(root)
    table["path"] = table["image"].map(index).fillna("").astype(object)
    absent = table.loc[table["path"] == "", "image"].sort_values()
    if absent.empty:
        return table
    message = (f"{len(absent)} of {len(table)} images listed in {csv_path.name} were not found "
               f"under {root} (first: {', '.join(absent.iloc[:5])})")
    if missing == "error":
        raise FileNotFoundError(message)
    warnings.warn(f"{message}; {'dropped' if missing == 'drop' else 'kept with an empty path'}",
                  stacklevel=3)
    return table[table["path"] != ""].copy() if missing == "drop" else table


def index_images(root: str | Path) -> dict[str, str]:
    """File name -> absolute path for every PNG/JPEG/DICOM below `root` (any depth: NIH ships
    images_001/images/...). Two files with the same name are an error naming both."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    found: dict[str, str] = {}
    stack = [os.path.abspath(root)]
    while stack:  # os.scandir: one stat-free listing per folder, fast on 112,120 files
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=True):
                    if not entry.name.startswith("."):
                        stack.append(entry.path)
                elif entry.name.lower().endswith(IMAGE_EXTENSIONS):
                    if entry.name in found:
                        raise MetadataError(f"image name {entry.name!r} found twice: "
                                            f"{found[entry.name]} and {entry.path}")
                    found[entry.name] = entry.path
    return found


def read_bbox(csv_path: str | Path) -> pd.DataFrame:
    """BBox_List_2017.csv[.gz] -> DataFrame image, finding (canonical name), x, y, w, h (float,
    pixels of the original 1024x1024 image). Handles NIH's header `Bbox [x,y,w,h]` (which the
    comma splits into four names) and its trailing empty columns, and the `Infiltrate` spelling."""
    csv_path = Path(csv_path)
    header = pd.read_csv(csv_path, header=None, nrows=1, dtype=str, keep_default_na=False)
    first = [str(v).strip() for v in header.iloc[0]]
    if first[:2] != ["Image Index", "Finding Label"] or len(first) < 6:
        raise MetadataError(f"{csv_path}: header {','.join(first)!r} is not NIH's bbox header "
                            "'Image Index,Finding Label,Bbox [x,y,w,h]'")
    extra = [f"extra{i}" for i in range(len(first) - 6)]
    df = pd.read_csv(csv_path, header=None, skiprows=1, names=[*_BBOX_COLUMNS, *extra],
                     dtype=str, keep_default_na=False)
    where = _Where(csv_path, df["image"])
    for col in extra:  # NIH's trailing columns are empty; anything else is not this format
        where.refuse(df[col].fillna("").str.strip() != "", df[col], "unexpected value", "after h")
    return pd.DataFrame({"image": df["image"].str.strip().to_numpy(dtype=object),
                         "finding": _canonical_findings(df["finding"], where),
                         **{col: _to_float(df[col], col, where) for col in ("x", "y", "w", "h")}})


def _canonical_findings(values: pd.Series, where: _Where) -> np.ndarray:
    names = []
    for row, text in enumerate(values.str.strip()):
        try:
            names.append(FINDINGS[finding_index(text)])
        except UnknownLabelError as exc:
            raise UnknownLabelError(f"{where(row)}: {exc}") from None
    return np.array(names, dtype=object)


def _to_float(values: pd.Series, column: str, where: _Where) -> np.ndarray:
    numbers = pd.to_numeric(values.str.strip(), errors="coerce")
    where.refuse(numbers.isna(), values, f"box {column}", "is not a number")
    return numbers.to_numpy(dtype=np.float64)


def boxes_by_image(df: pd.DataFrame) -> dict[str, list[tuple[str, float, float, float, float]]]:
    """read_bbox table -> {image: [(finding, x, y, w, h), ...]} in file order."""
    boxes: dict[str, list] = {}
    for image, finding, x, y, w, h in df[list(_BBOX_COLUMNS)].itertuples(index=False):
        boxes.setdefault(image, []).append((finding, float(x), float(y), float(w), float(h)))
    return boxes
