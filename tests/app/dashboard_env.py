"""Builds a tiny dashboard world on disk for the app and browser tests: a runs root with one
finished, evaluated fusion run (real checkpoint format, random weights, 64 px), a dataset folder
with a few films, and a worklist filled from the run's predictions. Every file is written by the
project's own writers (save_checkpoint, scoring.write_outputs, Worklist.import_predictions).

`build(root, calibrated=True)` makes the fusion run demo-like: a `cxr synth` dataset (SYNTH
patients at 64 px), the run's split of it, the checkpoint's meta pointing at both (synthetic:
true, as training writes it) and its readout fitted by `cxr calibrate` itself (about 6 s of
one CPU core). The weights stay random, and still its OOD score tells real films from phantoms.
Measured with these seeds (0 everywhere; 2026-11-30; tests/app/test_predict.py::
test_the_calibrated_world_tells_real_films_from_phantoms checks it): threshold 9.33 (95th
percentile of 37 validation films); 55 of the 56 real NIH films above it (lowest 9.13; the
browser test's 00000100_000.png 13.36), 1 of the 27 synthetic test films (median 4.69, the
typical film below is the median one); AUROC 0.999. Alternatives measured: 80 patients flag all
56 NIH films but 6 of 53 synthetic test films (threshold 7.44); 96 px brings 00000100_000.png to
9.27 against a threshold of 9.17. tests/browser/test_e2e.py and tests/app/test_predict.py rely
on the NIH film being flagged and the typical synthetic film not."""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # app_ui.py lives at the repo root, as `streamlit run` sees it
    sys.path.insert(0, str(REPO))

IMAGE_SIZE = 64
N_CASES = 6
SYNTH = 40                       # patients of the calibrated world's synthetic dataset
SYNTH_FRACTIONS = (0.5, 0.3, 0.2)  # a large validation share: the OOD threshold is its 95th pct


@dataclass
class DashboardEnv:
    root: Path
    runs: Path
    data: Path
    worklist: Path
    run_dir: Path
    films: list[Path]
    synthetic_film: Path | None = None  # calibrated worlds: a typical synthetic test-split film

    def env(self) -> dict:
        return {"CXR_RUNS_DIR": str(self.runs), "CXR_DATA_DIR": str(self.data),
                "CXR_WORKLIST": str(self.worklist)}

    def apply(self, monkeypatch) -> None:
        for k, v in self.env().items():
            monkeypatch.setenv(k, v)

    def copy_to(self, dest: Path) -> "DashboardEnv":
        """A writable copy (the worklist's film paths still point at the original films)."""
        import shutil
        shutil.copytree(self.root, dest)
        moved = lambda p: dest / p.relative_to(self.root)  # noqa: E731
        return DashboardEnv(dest, moved(self.runs), moved(self.data), moved(self.worklist),
                            moved(self.run_dir), [moved(f) for f in self.films],
                            self.synthetic_film and moved(self.synthetic_film))


def film_array(seed: int, size: int = 96) -> np.ndarray:
    """A chest-like grey film (uint8): two dark lungs in a bright body, plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = 0.8 - 0.5 * (((xx - 0.32) / 0.15) ** 2 + ((yy - 0.5) / 0.3) ** 2 < 1) \
        - 0.5 * (((xx - 0.68) / 0.15) ** 2 + ((yy - 0.5) / 0.3) ** 2 < 1)
    return (np.clip(img + rng.normal(0, 0.05, img.shape), 0, 1) * 255).astype(np.uint8)


def film_png(path: Path, seed: int, size: int = 96) -> Path:
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(film_array(seed, size)).save(path)
    return path


def tiny_model(name: str = "fusion"):
    import torch
    from cxr.models import create_model
    torch.manual_seed(0)
    kw = dict(input_size=IMAGE_SIZE)
    if name == "fusion":
        kw.update(dim=32)  # a narrow fused map: 64 channels
    return create_model(name, pretrained=False, **kw)


def write_run(run_dir: Path, model_name: str = "fusion", evaluate: bool = True,
              val_auc: float = 0.61, data_dir: Path | None = None) -> Path:
    """A finished run folder as `cxr train` (+ `cxr evaluate`) leave it. With data_dir (a
    `cxr synth` folder) the run has a real split of it and its meta points at it, so `cxr
    calibrate` can fit its readout."""
    import pandas as pd
    from cxr.checkpoint import save_checkpoint

    model = tiny_model(model_name)
    run_dir.mkdir(parents=True, exist_ok=True)
    meta = {"config": {"model": model_name, "image_size": IMAGE_SIZE}, "epoch": 2,
            "phase": "finetune", "metrics": {"val_macro_auc": val_auc},
            "split": {"path": "split.csv", "content_hash": "0" * 64, "strategy": "patient",
                      "seed": 0}, "data_version": "test"}
    if data_dir is not None:
        meta.update(write_split(run_dir, data_dir))
        meta["config"]["data_dir"] = str(data_dir)
    save_checkpoint(run_dir / "best.pt", model, meta)
    (run_dir / "config.yaml").write_text(f"model: {model_name}\nimage_size: {IMAGE_SIZE}\n"
                                         "epochs: 1\n")
    rows = [{"phase": "head", "epoch": 1, "train_loss": 0.30, "val_loss": 0.28,
             "val_macro_auc": val_auc - 0.05},
            {"phase": "finetune", "epoch": 2, "train_loss": 0.25, "val_loss": 0.27,
             "val_macro_auc": val_auc}]
    pd.DataFrame(rows).to_csv(run_dir / "history.csv", index=False)
    (run_dir / "progress.json").write_text(json.dumps(
        {"status": "finished", "model": model_name, "phase": "finetune", "epoch": 2,
         "epochs": 2, "fraction": 1.0, "best_val_auc": val_auc, "pid": 1, "error": None}))
    if evaluate:
        write_eval(run_dir, seed=len(model_name))
    return run_dir


def write_split(run_dir: Path, data_dir: Path) -> dict:
    """The run's patient split of `data_dir` (split.csv + split.json, as training writes them);
    returns the checkpoint meta that names it."""
    from cxr.data.layout import DatasetFiles, data_version
    from cxr.data.metadata import read_data_entry
    from cxr.data.splits import make_split, save_split

    files = DatasetFiles.locate(data_dir)
    version = data_version(files.data_entry)
    split = make_split(read_data_entry(files.data_entry), "patient", seed=0,
                       fractions=SYNTH_FRACTIONS)
    sidecar = save_split(split, run_dir / "split.csv", {
        "strategy": "patient", "seed": 0, "patient_fraction": 1.0,
        "fractions": list(SYNTH_FRACTIONS), "data_version": version, "report": {}})
    return {"data_version": version, "synthetic": files.synthetic,
            "split": {"path": str(run_dir / "split.csv"), "content_hash": sidecar["content_hash"],
                      "strategy": "patient", "seed": 0}}


def calibrate(run_dir: Path, data_dir: Path) -> Path:
    """`cxr calibrate` on the run (its readout beside best.pt), then the synthetic test film with
    the median OOD score: a typical film of the data the model's readout was fitted on."""
    import numpy as np
    import pandas as pd
    from cxr.checkpoint import load_model
    from cxr.cli import main
    from cxr.predict import predict_images
    from cxr.readout import load_readout

    if main(["calibrate", "--checkpoint", str(run_dir / "best.pt"), "--passes", "5",
             "--device", "cpu"]) != 0:
        raise RuntimeError(f"cxr calibrate failed on {run_dir}")
    split = pd.read_csv(run_dir / "split.csv")
    films = [data_dir / "images" / name for name in split.loc[split["split"] == "test", "image"]]
    model, _ = load_model(run_dir / "best.pt")
    preds = predict_images(model, films, passes=2, readout=load_readout(run_dir / "best.pt"))
    scores = np.array([p.ood_score for p in preds])
    return films[int(np.argsort(scores)[len(scores) // 2])]


def write_eval(run_dir: Path, seed: int = 0, n: int = 60) -> None:
    from cxr.evaluation.predictions import predictions_frame
    from cxr.evaluation.scoring import score, write_outputs

    rng = np.random.default_rng(seed)
    y = (rng.random((n, 14)) < 0.3).astype(np.uint8)
    y[0, :], y[1, :] = 1, 0  # every finding has both classes
    prob = np.clip(0.3 * y + rng.random((n, 14)) * 0.7, 0, 1)
    std = rng.random((n, 14)) * 0.15
    patients = np.arange(n) // 2
    metrics = score(y, prob, patients, std=std, n_bootstrap=20, seed=0)
    metrics.update({"mode": "checkpoint", "split": "test", "seed": 0, "strategy": "patient",
                    "data_version": "test", "model": {"name": "fusion"}, "passes": 5})
    images = [f"{i:08d}_000.png" for i in range(n)]
    write_outputs(run_dir / "eval", metrics, y, prob,
                  predictions_frame(images, prob, std, std.max(axis=1) > 0.1))


def build(root: Path, model: str = "fusion", calibrated: bool = False) -> DashboardEnv:
    """The whole tiny world under `root`: one finished, evaluated run (`tiny-fusion`; a
    `simple_cnn` one builds and explains faster) and a worklist of its predictions on six
    synthetic films; calibrated=True: the run is the demo-like one of this module's docstring
    (readout and all)."""
    from cxr.evaluation.predictions import predictions_frame
    from cxr.hashing import file_sha256
    from cxr.worklist import Worklist

    runs, data = root / "runs", root / "data"
    synth = None
    if calibrated:
        from cxr.synth.generate import generate_dataset
        synth = data / "synth"
        generate_dataset(synth, patients=SYNTH, size=IMAGE_SIZE, seed=0, workers=1)
    run_dir = write_run(runs / f"tiny-{model}", model, data_dir=synth)
    typical = calibrate(run_dir, synth) if calibrated else None
    films = [film_png(data / "tiny" / "images" / f"{i:08d}_000.png", i) for i in range(N_CASES)]
    rng = np.random.default_rng(1)
    prob = rng.random((N_CASES, 14))
    std = np.linspace(0.02, 0.2, N_CASES)[:, None] * rng.random((N_CASES, 14))
    preds = predictions_frame([f.name for f in films], prob, std, std.max(axis=1) > 0.1)
    csv = root / "predictions.csv"
    preds.to_csv(csv, index=False)
    worklist = data / "worklist.sqlite"
    Worklist(worklist).import_predictions(csv, model, file_sha256(run_dir / "best.pt"),
                                          images_root=data / "tiny" / "images")
    return DashboardEnv(root, runs, data, worklist, run_dir, films, typical)


def png_bytes(seed: int = 0, size: int = 96) -> bytes:
    import io
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(film_array(seed, size)).save(buf, format="PNG")
    return buf.getvalue()
