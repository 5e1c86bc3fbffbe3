"""Leak-free train/val/test splits: by patient, saved with their seed, strategy and a hash.

    cxr split --data ../shared/data/nih --strategy patient --seed 0 --out /tmp/patient_seed0.csv
    cxr split --data data/demo --strategy official      # -> data/demo/splits/official_seed0.csv
    cxr split --data DIR --strategy patient --patient-fraction 0.5   # the report's 50% of patients

Strategies:
- `patient`: iterative stratification (Sechidis et al. 2011, the iterative-stratification
  package) of PATIENTS into 70/10/20 on their labels and image counts (`_strata`). Images
  follow their patient, so no patient is in two splits. About 1 s for the 30,805 patients of
  the full table.
- `official`: NIH's test_list.txt is the test split; validation is carved from
  train_val_list.txt by patient, stratified the same way.

`--patient-fraction F` first keeps a stratified, seeded fraction F of the patients. Splits are
made from the metadata alone (every row of Data_Entry, whether or not its image is downloaded),
so the same seed gives the same split on every machine. Every split is written as a CSV plus a
JSON sidecar holding its hash (`save_split`); `load_split` refuses a CSV whose hash does not
match. The patient overlap between splits is computed and must be 0.
"""
from __future__ import annotations

import hashlib
import io
import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
from iterstrat.ml_stratifiers import IterativeStratification

from cxr.atomic import write_bytes
from cxr.labels import FINDINGS, NO_FINDING

SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.7, 0.1, 0.2)
SPLIT_COLUMNS = ("image", "patient", "split")
META_KEYS = ("strategy", "seed", "patient_fraction", "fractions", "data_version", "report")


def make_split(table: pd.DataFrame, strategy: str = "patient", seed: int = 0,
               fractions=DEFAULT_FRACTIONS, patient_fraction: float = 1.0,
               train_val_list=None, test_list=None) -> pd.DataFrame:
    """Metadata table -> DataFrame image, patient, split (sorted by image).

    train_val_list / test_list (official only): a path to NIH's list file or an iterable of
    image names. Seeded by `seed` alone; numpy's global RNG is never used.
    """
    fractions = _check_args(strategy, seed, fractions, patient_fraction)
    patients = _strata(table)
    if patient_fraction < 1.0:
        keep = _stratify(patients.to_numpy(), [patient_fraction, 1 - patient_fraction], seed, 0)
        patients = patients[keep == 0]
    if strategy == "patient":
        folds = _stratify(patients.to_numpy(), fractions, seed, 1)
        assigned = pd.Series(np.asarray(SPLITS)[folds], index=patients.index)
    else:
        assigned = _official(table, patients, fractions, seed, train_val_list, test_list)
    split = table.loc[table["patient"].isin(assigned.index), ["image", "patient"]].copy()
    split["split"] = split["patient"].map(assigned).to_numpy(dtype=object)
    split = split.sort_values("image", kind="stable").reset_index(drop=True)
    overlap = patient_overlap(split)
    if any(overlap.values()):  # impossible by construction; checked, not assumed
        raise RuntimeError(f"patients in two splits: {overlap}")
    return split


def _check_args(strategy, seed, fractions, patient_fraction) -> list[float]:
    if strategy not in ("patient", "official"):
        raise ValueError(f"strategy must be 'patient' or 'official', not {strategy!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, not {seed!r}")
    fractions = [float(f) for f in fractions]
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions must be three positive numbers (train, val, test) summing "
                         f"to 1, not {fractions}")
    if not 0 < patient_fraction <= 1:
        raise ValueError(f"patient_fraction must be in (0, 1], not {patient_fraction}")
    return fractions


def patient_labels(table: pd.DataFrame) -> pd.DataFrame:
    """Patient-level label matrix (index: patient): the union of the patient's image labels,
    plus a 'No Finding' column for patients with no finding in any image, so they are
    spread over the splits like everyone else."""
    per_patient = table.groupby("patient", sort=True)[list(FINDINGS)].max().astype(np.uint8)
    per_patient[NO_FINDING] = (per_patient.sum(axis=1) == 0).astype(np.uint8)
    return per_patient


# Image-count bins stratified beside the labels: a few patients have up to 184 images, and
# spreading them evenly keeps the image-level prevalence and the 70/10/20 image shares close
# (measured on the real table over 6 seeds: largest image-level gap 1.9 -> 1.2 points).
IMAGE_COUNT_BINS = (4, 10, 30)


def _strata(table: pd.DataFrame) -> pd.DataFrame:
    """What each patient is stratified on: patient_labels plus 'has >= k images' columns."""
    strata = patient_labels(table)
    n_images = table.groupby("patient", sort=True).size()
    for k in IMAGE_COUNT_BINS:
        strata[f"images>={k}"] = (n_images >= k).astype(np.uint8)
    return strata


def _stratify(labels: np.ndarray, fractions, seed: int, stage: int) -> np.ndarray:
    """Iterative stratification of the rows of `labels` into len(fractions) folds -> fold per row.

    The rows are shuffled first (as iterstrat's own ShuffleSplit does), with a private
    generator seeded by (seed, stage), so each stage draws its own stream."""
    rng = np.random.RandomState([seed, stage])
    order = rng.permutation(len(labels))
    folds = IterativeStratification(labels=labels[order].astype(bool),
                                     r=np.asarray(fractions, dtype=float), random_state=rng)
    out = np.empty(len(labels), dtype=np.int64)
    out[order] = folds
    return out


def _official(table, patients, fractions, seed, train_val_list, test_list) -> pd.Series:
    """Patient -> split: test from NIH's test list, val carved from train_val by patient."""
    if train_val_list is None or test_list is None:
        raise FileNotFoundError("the official split needs train_val_list.txt and test_list.txt")
    in_test = _official_test_images(table, _names(train_val_list), _names(test_list))
    test_patients = set(table.loc[in_test, "patient"])
    both = sorted(test_patients & set(table.loc[~in_test, "patient"]))
    if both:
        raise ValueError(f"the official lists put {len(both)} patient(s) in both train_val and "
                         f"test (first: {both[:5]}); they must be patient-disjoint")
    is_test = patients.index.isin(list(test_patients))
    assigned = pd.Series("test", index=patients.index, dtype=object)
    train_val = patients[~is_test]
    val_share = fractions[1] / (fractions[0] + fractions[1])
    folds = _stratify(train_val.to_numpy(), [1 - val_share, val_share], seed, 2)
    assigned[train_val.index] = np.where(folds == 1, "val", "train")
    return assigned


def _names(source) -> set[str]:
    if isinstance(source, (str, Path)):
        return {line.strip() for line in Path(source).read_text().splitlines() if line.strip()}
    return {str(name).strip() for name in source}


def _official_test_images(table, train_val: set[str], test: set[str]) -> np.ndarray:
    images = table["image"]
    # set lookups in Python: pandas' isin on an arrow string column converts the whole set first
    in_test = np.array([name in test for name in images], dtype=bool)
    in_train_val = np.array([name in train_val for name in images], dtype=bool)
    for mask, what in ((in_test & in_train_val, "in both train_val_list and test_list"),
                       (~in_test & ~in_train_val, "in neither train_val_list nor test_list")):
        if mask.any():
            first = ", ".join(images[mask].iloc[:5])
            raise ValueError(f"{int(mask.sum())} image(s) are {what} (first: {first})")
    return in_test


def patient_overlap(split_df: pd.DataFrame) -> dict[str, int]:
    """Number of patients shared by every pair of splits, e.g. {'train-test': 0, ...}."""
    members = {s: set(split_df.loc[split_df["split"] == s, "patient"]) for s in SPLITS}
    return {f"{a}-{b}": len(members[a] & members[b]) for a, b in itertools.combinations(SPLITS, 2)}


def attach_split(table: pd.DataFrame, split_df: pd.DataFrame) -> pd.DataFrame:
    """Rows of `table` that the split covers, with a `split` column. Images of the split that
    the table lacks, or whose patient differs, are an error (a split of other data)."""
    merged = split_df.merge(table, on="image", how="left", suffixes=("_split", ""),
                            indicator=True)
    unknown = merged.loc[merged["_merge"] == "left_only", "image"]
    if len(unknown):
        raise ValueError(f"{len(unknown)} image(s) of the split are not in the metadata table "
                         f"(first: {', '.join(unknown.iloc[:5])}): was it made from other data?")
    moved = merged.loc[merged["patient_split"] != merged["patient"], "image"]
    if len(moved):
        raise ValueError(f"{len(moved)} image(s) have another patient id in the split than in the "
                         f"table (first: {', '.join(moved.iloc[:5])})")
    return merged.drop(columns=["patient_split", "_merge"])[[*table.columns, "split"]]


def split_report(split_df: pd.DataFrame, table: pd.DataFrame) -> dict:
    """JSON-safe report: images and patients per split; per-finding prevalence (fraction) per
    split among images and among patients, 'No Finding' included; the largest gap between
    splits in percentage points over the 14 findings (`images`, `patients`) and for No Finding;
    and the patient overlap between every pair of splits."""
    joined = attach_split(table, split_df)
    names = [*FINDINGS, NO_FINDING]
    joined[NO_FINDING] = (joined[list(FINDINGS)].sum(axis=1) == 0).astype(np.uint8)
    report = {"counts": {}, "prevalence_images": {n: {} for n in names},
              "prevalence_patients": {n: {} for n in names}}
    for s in SPLITS:
        part = joined[joined["split"] == s]
        per_patient = patient_labels(part) if len(part) else None
        report["counts"][s] = {"images": int(len(part)), "patients": int(part["patient"].nunique())}
        for n in names:
            report["prevalence_images"][n][s] = _mean(part[n]) if len(part) else None
            report["prevalence_patients"][n][s] = _mean(per_patient[n]) if len(part) else None
    report["max_gap_pp"] = {
        key: _max_gap(report[f"prevalence_{kind}"], which) for kind in ("images", "patients")
        for key, which in ((kind, FINDINGS), (f"no_finding_{kind}", [NO_FINDING]))}
    report["patient_overlap"] = patient_overlap(split_df)
    return report


def _mean(values: pd.Series) -> float:
    return round(float(values.mean()), 6)


def _max_gap(prevalence: dict, names) -> float:
    """Largest (max - min over splits) prevalence among `names`, in percentage points."""
    gaps = [max(v) - min(v) for v in ([x for x in prevalence[n].values() if x is not None]
                                      for n in names) if v]
    return round(100 * max(gaps, default=0.0), 3)


def save_split(split_df: pd.DataFrame, path: str | Path, meta: dict) -> dict:
    """Write the split CSV and its sidecar `path.with_suffix('.json')`, each atomically.
    meta needs strategy, seed, patient_fraction, fractions, data_version and report; the
    sha256 of the CSV bytes is added as content_hash. Returns the sidecar dict."""
    absent = [k for k in META_KEYS if k not in meta]
    if absent:
        raise ValueError(f"split metadata lacks {absent}")
    path = Path(path)
    body = split_df[list(SPLIT_COLUMNS)].to_csv(index=False, lineterminator="\n").encode()
    sidecar = {**meta, "content_hash": hashlib.sha256(body).hexdigest()}
    write_bytes(path, body)
    write_bytes(path.with_suffix(".json"), (json.dumps(sidecar, indent=2) + "\n").encode())
    return sidecar


def load_split(path: str | Path) -> tuple[pd.DataFrame, dict]:
    """Read a split CSV and its sidecar; a CSV that does not match the sidecar's hash (edited
    or from another split) is an error."""
    path = Path(path)
    sidecar_path = path.with_suffix(".json")
    if not sidecar_path.is_file():
        raise FileNotFoundError(f"split {path} has no sidecar {sidecar_path.name}")
    body = path.read_bytes()
    meta = json.loads(sidecar_path.read_text())
    actual = hashlib.sha256(body).hexdigest()
    if actual != meta.get("content_hash"):
        raise ValueError(f"split {path} does not match the content_hash in {sidecar_path.name} "
                         f"(file sha256 {actual[:12]}, "
                         f"sidecar {str(meta.get('content_hash'))[:12]})"
                         ": it was edited after it was made; make it again with `cxr split`")
    df = pd.read_csv(io.BytesIO(body), dtype={"image": str, "split": str})
    if list(df.columns) != list(SPLIT_COLUMNS):
        raise ValueError(f"split {path}: columns {list(df.columns)}, "
                         f"expected {list(SPLIT_COLUMNS)}")
    bad = ~df["split"].isin(SPLITS)
    if bad.any():
        raise ValueError(f"split {path} line {int(np.argmax(bad.to_numpy())) + 2}: split "
                         f"{df['split'][bad].iloc[0]!r} is not one of {SPLITS}")
    return df.astype({"image": object, "split": object}), meta


def add_arguments(parser) -> None:
    parser.add_argument("--data", required=True, help="dataset folder (ChestX-ray14 layout)")
    parser.add_argument("--strategy", choices=("patient", "official"), default="patient")
    parser.add_argument("--patient-fraction", type=float, default=1.0,
                        help="keep this stratified fraction of patients first (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out",
                        help="split CSV (default DIR/splits/<strategy>_seed<S>[_pf<F>].csv)")


def run(args) -> int:
    from cxr.data.layout import DatasetFiles, data_version
    from cxr.data.metadata import read_data_entry

    files = DatasetFiles.locate(args.data)
    table = read_data_entry(files.data_entry, images_root=None)  # metadata alone is enough
    split = make_split(table, args.strategy, seed=args.seed,
                       patient_fraction=args.patient_fraction,
                       train_val_list=files.train_val_list, test_list=files.test_list)
    report = split_report(split, table)
    suffix = "" if args.patient_fraction == 1 else f"_pf{args.patient_fraction:g}"
    out = Path(args.out or files.splits_dir / f"{args.strategy}_seed{args.seed}{suffix}.csv")
    meta = {"strategy": args.strategy, "seed": args.seed, "patient_fraction": args.patient_fraction,
            "fractions": list(DEFAULT_FRACTIONS), "data_version": data_version(files.data_entry),
            "report": report}
    save_split(split, out, meta)
    print(format_report(report))
    print(f"wrote {out} and {out.with_suffix('.json').name}")
    return 0


def format_report(report: dict) -> str:
    counts = ", ".join(f"{s} {c['images']:,} images / {c['patients']:,} patients"
                       for s, c in report["counts"].items())
    overlap = sum(report["patient_overlap"].values())
    gap = report["max_gap_pp"]
    return (f"{counts}\npatient overlap between splits: {overlap}\n"
            f"largest prevalence gap between splits over the 14 findings: {gap['patients']:.2f} "
            f"points among patients, {gap['images']:.2f} among images (No Finding: "
            f"{gap['no_finding_patients']:.2f}, {gap['no_finding_images']:.2f})")
