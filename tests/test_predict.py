"""cxr/predict.py: the predictions CSV, corrupt and lateral files reported and skipped, DICOM
by content, Grad-CAM overlays, and the predict_images API."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from cxr.checkpoint import load_model, save_checkpoint
from cxr.cli import main
from cxr.labels import FINDINGS
from cxr.models import create_model
from cxr.predict import predict_images

RNG = np.random.default_rng(0)
FILM = (RNG.random((48, 40)) * 255).astype(np.uint8)  # not square, not the model's size


def _dicom(path, arr, view=None):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    if view:
        ds.ViewPosition = view
    ds.set_pixel_data(arr, "MONOCHROME2", 8)
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("simple_cnn", input_size=32)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "best.pt", model, {})


@pytest.fixture()
def folder(tmp_path):
    """2 PNGs, a JPEG, an extension-less DICOM in a subfolder, a corrupt PNG, a lateral DICOM,
    and a text file that is not an image (ignored)."""
    d = tmp_path / "films"
    (d / "sub").mkdir(parents=True)
    Image.fromarray(FILM).save(d / "a.png")
    Image.fromarray(255 - FILM).save(d / "b.png")
    Image.fromarray(FILM).convert("RGB").save(d / "c.jpg")
    _dicom(d / "sub" / "1.2.840.99", FILM, view="PA")
    _dicom(d / "sub" / "lateral.dcm", FILM, view="LL")
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (d / "notes.txt").write_text("not an image")
    return d


def test_folder_with_corrupt_file_reports_it_and_predicts_the_rest(checkpoint, folder,
                                                                   tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["predict", "--checkpoint", str(checkpoint), str(folder), "--passes", "5",
                 "--out", str(out), "--batch-size", "2"])
    assert code == 0
    err = capsys.readouterr().err
    assert "broken.png" in err and "lateral.dcm" in err and "'LL'" in err
    df = pd.read_csv(out / "predictions.csv")
    assert list(df.columns) == (["Image Index"] + [f"prob_{f}" for f in FINDINGS]
                                + [f"std_{f}" for f in FINDINGS] + ["uncertain", "source"])
    assert sorted(df["Image Index"]) == ["1.2.840.99", "a.png", "b.png", "c.jpg"]
    assert set(df["source"]) == {str((folder / n).resolve())
                                 for n in ("a.png", "b.png", "c.jpg", "sub/1.2.840.99")}
    probs = df[[f"prob_{f}" for f in FINDINGS]].to_numpy()
    stds = df[[f"std_{f}" for f in FINDINGS]].to_numpy()
    assert ((probs > 0) & (probs < 1)).all() and (stds >= 0).all() and (stds > 0).any()
    assert (df["uncertain"] == (stds > 0.1).any(axis=1)).all()
    errors = pd.read_csv(out / "errors.csv")
    assert sorted(errors["file"].map(lambda p: p.rsplit("/", 1)[-1])) == ["broken.png",
                                                                          "lateral.dcm"]
    assert errors["error"].str.contains("broken.png").any()  # the reason names the file


def test_nothing_predicted_is_an_error(checkpoint, tmp_path, capsys):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"nope")
    code = main(["predict", "--checkpoint", str(checkpoint), str(tmp_path / "bad"),
                 str(tmp_path / "missing.png"), "--out", str(tmp_path / "out")])
    assert code == 1
    assert not (tmp_path / "out" / "predictions.csv").exists()
    errors = pd.read_csv(tmp_path / "out" / "errors.csv")
    assert len(errors) == 2 and "no such file" in errors["error"].iloc[0]
    assert "no image could be predicted" in capsys.readouterr().err


def test_dicom_gives_the_same_prediction_as_the_png_of_its_pixels(checkpoint, folder):
    model, _ = load_model(checkpoint)
    [png] = predict_images(model, [folder / "a.png"], passes=8, seed=3)
    [dcm] = predict_images(model, [folder / "sub" / "1.2.840.99"], passes=8, seed=3)
    assert dcm.meta["format"] == "DICOM" and dcm.name == "1.2.840.99"
    np.testing.assert_allclose(dcm.probs, png.probs, rtol=1e-6)
    np.testing.assert_allclose(dcm.samples, png.samples, rtol=1e-6)
    assert png.samples.shape == (8, 14) and png.probs.shape == png.std.shape == (14,)
    np.testing.assert_allclose(png.probs, png.samples.mean(axis=0), rtol=1e-5)


def test_cam_overlays_for_top_k_findings(checkpoint, folder, tmp_path):
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(checkpoint), str(folder / "a.png"),
                 str(folder / "b.png"), "--passes", "4", "--cam", "--top-k", "2",
                 "--out", str(out)]) == 0
    df = pd.read_csv(out / "predictions.csv").set_index("Image Index")
    for name in ("a", "b"):
        probs = df.loc[f"{name}.png", [f"prob_{f}" for f in FINDINGS]].to_numpy(dtype=float)
        top = [FINDINGS[i] for i in np.argsort(-probs)[:2]]
        files = sorted(p.name for p in (out / "cam").glob(f"{name}_*.png"))
        assert files == sorted(f"{name}_{f}.png" for f in top)
        img = Image.open(out / "cam" / files[0])
        assert img.mode == "RGB" and img.size == (40, 48)  # the film's own size
