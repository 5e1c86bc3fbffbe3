"""What `cxr evaluate --checkpoint` needs besides scoring: the run's split joined to the dataset's
labels, MC-dropout predictions over a table, and the pointing game (`--pointing-game`).

    >>> from cxr.checkpoint import load_model
    >>> from cxr.evaluation.inference import RunData, mc_predict_table
    >>> model, meta = load_model("runs/fusion/best.pt")
    >>> run = RunData.open("runs/fusion", meta, data_dir=None)       # config's data_dir
    >>> mean, std, uncertain = mc_predict_table(model, run.rows("test"), passes=25, rule="mean")
    >>> r = mc_table(model, run.rows("test"), passes=25, keep=True)   # + samples and features

The split is the run's own (RUN_DIR/split.csv, checked against the checkpoint's content_hash)
and the dataset must be the version the run was trained on: scoring a run against other labels
would report numbers nobody can reproduce.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cxr.hashing import file_sha256
from cxr.labels import FINDINGS
from cxr.uncertainty import (DEFAULT_RULE, UNCERTAIN_STD, film_seeds_for, image_uncertainty,
                             mc_predict)


@dataclass
class RunData:
    joined: pd.DataFrame  # metadata table rows of the split, with a `split` column
    split_meta: dict
    split_path: Path
    files: object  # cxr.data.layout.DatasetFiles
    data_version: str
    missing: dict = field(default_factory=dict)  # split -> images of the split not on disk

    @classmethod
    def open(cls, run_dir: str | Path, meta: dict, data_dir: str | None = None) -> "RunData":
        from cxr.data.layout import DatasetFiles, data_version
        from cxr.data.metadata import read_data_entry
        from cxr.data.splits import attach_split

        split_df, split_meta, split_path = _run_split(Path(run_dir), meta)
        data_dir = data_dir or (meta.get("config") or {}).get("data_dir")
        if not data_dir:
            raise ValueError(f"checkpoint of {run_dir} names no data_dir: pass --data DIR")
        files = DatasetFiles.locate(data_dir)
        version = data_version(files.data_entry)
        trained = meta.get("data_version")
        if trained and trained != version:
            raise ValueError(f"{run_dir} was trained on data version {trained!r} but {data_dir} "
                             f"holds {version!r}: evaluate on the data the split was made from")
        table = read_data_entry(files.data_entry, files.images_root, missing="keep")
        return cls(attach_split(table, split_df), split_meta, split_path, files, version)

    def rows(self, split: str) -> pd.DataFrame:
        """Rows of one split (sorted by image) whose image is on disk. Missing images are left
        out as training leaves them out, but loudly: printed, and counted in `missing`."""
        part = self.joined[self.joined["split"] == split].reset_index(drop=True)
        absent = part.loc[part["path"] == "", "image"]
        self.missing[split] = int(len(absent))
        if len(absent):
            print(f"{split}: {len(absent)} of {len(part)} images are not under "
                  f"{self.files.images_root} and are left out (first: {', '.join(absent[:5])})")
        part = part[part["path"] != ""].reset_index(drop=True)
        if part.empty:
            raise FileNotFoundError(f"none of the {split} images of {self.split_path} is on "
                                    f"disk under {self.files.images_root}: check --data")
        return part

    @staticmethod
    def targets(rows: pd.DataFrame) -> np.ndarray:
        return rows[list(FINDINGS)].to_numpy(dtype=np.uint8)

    def provenance(self) -> dict:
        m = self.split_meta
        return {"strategy": m.get("strategy"), "split_seed": m.get("seed"),
                "split_path": str(self.split_path), "split_content_hash": m.get("content_hash"),
                "data_version": self.data_version, "data_dir": str(self.files.root),
                "labels_file": str(self.files.data_entry), "images_missing": dict(self.missing)}


def _run_split(run_dir: Path, meta: dict) -> tuple[pd.DataFrame, dict, Path]:
    """The run's split: RUN_DIR/split.csv (+ split.json if present) or meta['split']['path'].

    Whichever file is used, its sha256 must equal the checkpoint's split content_hash."""
    from cxr.data.splits import load_split
    from cxr.rundir import RunDir

    info = meta.get("split") or {}
    path = RunDir(run_dir).split
    if not path.is_file():
        if not info.get("path"):
            raise FileNotFoundError(f"{run_dir} has no split.csv and the checkpoint names no split")
        path = Path(info["path"])
    if path.with_suffix(".json").is_file():
        df, split_meta = load_split(path)
    else:  # a run directory may keep the CSV alone: check it against the checkpoint instead
        df = pd.read_csv(path, dtype={"image": str, "split": str})
        split_meta = {**info, "content_hash": file_sha256(path)}
    expected = info.get("content_hash")
    if expected and split_meta.get("content_hash") != expected:
        raise ValueError(f"split {path} (sha256 {str(split_meta.get('content_hash'))[:12]}) is not "
                         f"the split the checkpoint was trained with (sha256 {expected[:12]})")
    return df, {**info, **split_meta}, path


def _loader(model, rows: pd.DataFrame, batches: list[list[int]], seed: int):
    from cxr.data.dataset import CXRDataset
    from cxr.data.transforms import build_transform

    dataset = CXRDataset(rows, build_transform(model.preprocess, train=False), seed=seed)
    return dataset, torch.utils.data.DataLoader(dataset, batch_sampler=batches)


@dataclass
class MCTable:
    mean: np.ndarray                     # (N, 14) MC mean, in row order
    std: np.ndarray                      # (N, 14)
    uncertain: np.ndarray                # (N,) bool, under the rule
    samples: np.ndarray | None = None    # (passes, N, 14), with keep=True
    features: np.ndarray | None = None   # (N, C) pooled features, with keep=True


def mc_predict_table(model, rows: pd.DataFrame, passes: int = 25, batch_size: int = 32,
                     seed: int = 0, std_threshold: float = UNCERTAIN_STD, device: str = "cpu",
                     rule: str = DEFAULT_RULE, dist=None):
    """(mean (N, 14), std (N, 14), uncertain (N,)) over the table's images, in row order;
    `uncertain` under `rule` (its score: cxr.uncertainty.image_uncertainty(std, rule)[0]).
    `mc_table` says how."""
    r = mc_table(model, rows, passes, batch_size, seed, std_threshold, device, rule, dist)
    return r.mean, r.std, r.uncertain


@torch.no_grad()
def mc_table(model, rows: pd.DataFrame, passes: int = 25, batch_size: int = 32, seed: int = 0,
             std_threshold: float = UNCERTAIN_STD, device: str = "cpu", rule: str = DEFAULT_RULE,
             dist=None, keep: bool = False) -> MCTable:
    """MC dropout over the table's images, in row order; keep=True also returns every pass's
    probabilities and the pooled features (what a readout's calls and OOD score need:
    cxr.readout.Readout.apply), from the same backbone pass.

    Each film's dropout noise comes from (seed, its image name) (cxr.uncertainty.film_seed), so
    a rerun with the same seed reproduces the predictions exactly, whatever the batch size or
    the number of ranks. dist (cxr.train.distributed.DistInfo, under torchrun): this rank scores
    whole batches (shard_batches) and every rank gets all rows back, in row order."""
    from cxr.train.distributed import DistInfo, gather_arrays, shard_batches

    if rows.empty:
        raise ValueError("no images to predict")
    info = dist or DistInfo()
    names = rows["image"].astype(str).tolist()
    batches = shard_batches(len(rows), batch_size, info)
    classes = len(model.labels)
    empty = np.zeros((0, classes), np.float32)
    means, stds, samples, features = [empty], [empty], [np.zeros((0, passes, classes))], []
    _, loader = _loader(model, rows, batches, seed)
    for batch, (x, _) in zip(batches, loader):
        result = mc_predict(model, x.to(device), passes=passes, threshold=std_threshold,
                            rule=rule, film_seeds=film_seeds_for(seed, [names[i] for i in batch]))
        means.append(result.mean)
        stds.append(result.std)
        if keep:  # film-major, so that gather_arrays orders films
            samples.append(np.swapaxes(result.samples, 0, 1))
            features.append(result.features)
    index = np.array([i for batch in batches for i in batch], dtype=np.int64)
    arrays = [np.concatenate(means), np.concatenate(stds)]
    if keep:  # features: none when this rank had no batch
        arrays += [np.concatenate(samples).astype(np.float32),
                   np.concatenate(features) if features else np.zeros((0, 0), np.float32)]
    mean, std, *kept = gather_arrays(info, index, *arrays)
    r = MCTable(mean, std, image_uncertainty(std, rule, std_threshold)[1])
    if keep:
        r.samples, r.features = np.swapaxes(kept[0], 0, 1), kept[1]
    return r


# -- Grad-CAM pointing game (cxr.explain) ------------------------------------------------------

def pointing_game_hook(model, rows: pd.DataFrame, run: RunData) -> dict:
    """finding -> {hits, n, hit_rate, random_baseline} from `cxr.explain.pointing_game`, over the
    scored images that have expert boxes, passed as (tensor 3xSxS, name, original (w, h)).
    {'skipped': reason} when the dataset has no bbox list or none of the scored images has a
    box."""
    from cxr.data.metadata import boxes_by_image, read_bbox
    from cxr.explain import pointing_game

    if run.files.bbox is None:
        return {"skipped": f"no BBox_List_2017.csv in {run.files.root}"}
    boxes = boxes_by_image(read_bbox(run.files.bbox))
    with_boxes = rows[rows["image"].isin(boxes)].reset_index(drop=True)
    if with_boxes.empty:
        return {"skipped": "none of the scored images has a box in the bbox list"}
    dataset, _ = _loader(model, with_boxes, [], 0)
    images = []
    for i, name in enumerate(with_boxes["image"]):
        pixels = dataset.pixels(i)  # original resolution: boxes are in its pixel space
        images.append((dataset.transform(pixels, None), name, (pixels.shape[1], pixels.shape[0])))
    return pointing_game(model, images, {n: boxes[n] for n in with_boxes["image"]},
                         model.preprocess["input_size"], FINDINGS)
