"""cxr/predict.py: the predictions CSV, corrupt and lateral files reported and skipped, DICOM
by content, Grad-CAM overlays, and the predict_images API; every input file accounted for (a
fuzzed folder included); compressed DICOM predicted as its uncompressed pixels; no planted
patient identifier in anything `cxr predict` writes or prints."""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

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
from cxr.predict import find_inputs, predict_images

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/: dicom_files
import dicom_files as D  # noqa: E402

RNG = np.random.default_rng(0)
FILM = (RNG.random((48, 40)) * 255).astype(np.uint8)  # not square, not the model's size


def _dicom(path, arr, view=None):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
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
    a text file that is not an image, and a hidden file."""
    d = tmp_path / "films"
    (d / "sub").mkdir(parents=True)
    Image.fromarray(FILM).save(d / "a.png")
    Image.fromarray(255 - FILM).save(d / "b.png")
    Image.fromarray(FILM).convert("RGB").save(d / "c.jpg")
    _dicom(d / "sub" / "1.2.840.99", FILM, view="PA")
    _dicom(d / "sub" / "lateral.dcm", FILM, view="LL")
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (d / "notes.txt").write_text("not an image")
    (d / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    return d


def test_folder_with_corrupt_file_reports_it_and_predicts_the_rest(checkpoint, folder,
                                                                   tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["predict", "--checkpoint", str(checkpoint), str(folder), "--passes", "5",
                 "--out", str(out), "--batch-size", "2"])
    assert code == 0
    out_text, err = capsys.readouterr()
    assert "broken.png" in err and "lateral.dcm" in err and "'LL'" in err
    df = pd.read_csv(out / "predictions.csv")
    assert list(df.columns) == (["Image Index"] + [f"prob_{f}" for f in FINDINGS]
                                + [f"std_{f}" for f in FINDINGS]
                                + ["uncertain", "uncertainty", "uncertainty_rule", "source"])
    # keyed by the path below the folder given (issue 18 item 12)
    assert sorted(df["Image Index"]) == ["a.png", "b.png", "c.jpg", "sub/1.2.840.99"]
    assert set(df["source"]) == {str((folder / n).resolve())
                                 for n in ("a.png", "b.png", "c.jpg", "sub/1.2.840.99")}
    probs = df[[f"prob_{f}" for f in FINDINGS]].to_numpy()
    stds = df[[f"std_{f}" for f in FINDINGS]].to_numpy()
    assert ((probs > 0) & (probs < 1)).all() and (stds >= 0).all() and (stds > 0).any()
    # the report's rule, the default for a checkpoint that names none: mean std over findings
    assert (df["uncertainty_rule"] == "mean").all()
    np.testing.assert_allclose(df["uncertainty"], stds.mean(axis=1), rtol=1e-12)
    assert (df["uncertain"] == (stds.mean(axis=1) > 0.1)).all()
    errors = pd.read_csv(out / "errors.csv")
    assert sorted(errors["file"].map(lambda p: p.rsplit("/", 1)[-1])) == ["broken.png",
                                                                          "lateral.dcm",
                                                                          "notes.txt"]
    assert errors["error"].str.contains("broken.png").any()  # the reason names the file
    assert errors["error"].str.contains("notes.txt: not an image").any()
    assert "8 files: 4 predicted, 3 not usable (errors.csv), 1 ignored (hidden/excluded)" \
        in out_text
    assert "uncertain under rule mean (uncertain when the mean MC-dropout std" in out_text
    assert "uncertainty rule mean, from the default: the checkpoint predates" in out_text


def test_exclude_globs_ignore_files_and_are_counted(checkpoint, folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(checkpoint), str(folder), "--passes", "2",
                 "--out", str(out), "--exclude", "*.txt", "--exclude", "sub/*"]) == 0
    assert sorted(pd.read_csv(out / "predictions.csv")["Image Index"]) == ["a.png", "b.png",
                                                                         "c.jpg"]
    assert list(pd.read_csv(out / "errors.csv")["file"]) == [str(folder / "broken.png")]
    assert "8 files: 3 predicted, 1 not usable (errors.csv), 4 ignored (hidden/excluded)" \
        in capsys.readouterr().out


def test_nothing_predicted_is_an_error(checkpoint, tmp_path, capsys):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"nope")
    code = main(["predict", "--checkpoint", str(checkpoint), str(tmp_path / "bad"),
                 str(tmp_path / "missing.png"), "--out", str(tmp_path / "out")])
    assert code == 1
    assert not (tmp_path / "out" / "predictions.csv").exists()
    errors = pd.read_csv(tmp_path / "out" / "errors.csv")
    assert len(errors) == 2 and "no such file" in errors["error"].iloc[0]
    err = capsys.readouterr().err
    assert "2 files: 0 predicted, 2 not usable (errors.csv), 0 ignored" in err
    assert "no image could be predicted" in err


def test_dicom_gives_the_same_prediction_as_the_png_of_its_pixels(checkpoint, folder):
    model, _ = load_model(checkpoint)
    # one name for both: the dropout noise is the film's name's (cxr.uncertainty.film_seed)
    [png] = predict_images(model, [folder / "a.png"], passes=8, seed=3, names=["film"])
    [dcm] = predict_images(model, [folder / "sub" / "1.2.840.99"], passes=8, seed=3,
                           names=["film"])
    assert dcm.meta["format"] == "DICOM" and dcm.name == "film"
    assert predict_images(model, [folder / "sub" / "1.2.840.99"], passes=2)[0].name == \
        "1.2.840.99"
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


# --- the uncertainty rule and per-film noise -----------------------------------------------------

def _std_checkpoint(path, rule=None):
    """simple_cnn whose head spreads one finding wide (its std far above 0.1) and squeezes the
    others (std near 0); config names `rule` if given."""
    torch.manual_seed(0)
    model = create_model("simple_cnn", input_size=32)
    with torch.no_grad():
        model.head[-1].weight.mul_(0.01)
        model.head[-1].weight[0].mul_(3000)
    return save_checkpoint(path, model, {"config": {"uncertainty_rule": rule}} if rule else {})


@pytest.mark.parametrize("saved, flag, expected", [("any", [], "any"), ("mean", [], "mean"),
                                                   ("mean", ["--uncertainty-rule", "any"], "any"),
                                                   (None, ["--uncertainty-rule", "any"], "any")])
def test_rule_comes_from_the_checkpoint_or_the_flag(tmp_path, folder, capsys, saved, flag,
                                                    expected):
    ckpt = _std_checkpoint(tmp_path / "best.pt", saved)
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(ckpt), str(folder), "--passes", "6",
                 "--out", str(out), *flag]) == 0
    df = pd.read_csv(out / "predictions.csv")
    stds = df[[f"std_{f}" for f in FINDINGS]].to_numpy()
    score = stds.max(axis=1) if expected == "any" else stds.mean(axis=1)
    assert (df["uncertainty_rule"] == expected).all()
    np.testing.assert_allclose(df["uncertainty"], score, rtol=1e-12)
    assert (df["uncertain"] == (score > 0.1)).all()
    assert f"uncertain under rule {expected} (" in capsys.readouterr().out


def test_rules_disagree_on_a_film_with_one_wide_finding(tmp_path, folder):
    """One finding's std above 0.1, the mean std below: uncertain under `any`, certain under
    the report's `mean` (the reverse case is in tests/test_uncertainty.py)."""
    model, _ = load_model(_std_checkpoint(tmp_path / "best.pt"))
    films = [folder / n for n in ("a.png", "b.png", "c.jpg")]
    by_mean = predict_images(model, films, passes=20, rule="mean")
    by_any = predict_images(model, films, passes=20, rule="any")
    for m, a in zip(by_mean, by_any):
        np.testing.assert_array_equal(m.std, a.std)  # the same samples, scored two ways
        assert (m.score, a.score) == pytest.approx((m.std.mean(), m.std.max()))
        assert (m.uncertain, a.uncertain) == (m.score > 0.1, a.score > 0.1)
    assert all(a.uncertain and not m.uncertain for m, a in zip(by_mean, by_any))


def test_a_films_samples_do_not_depend_on_its_batch(checkpoint, folder):
    model, _ = load_model(checkpoint)
    films = [folder / n for n in ("a.png", "b.png", "c.jpg", "sub/1.2.840.99")]
    together = predict_images(model, films, passes=8, seed=5, batch_size=4)
    alone = [predict_images(model, [f], passes=8, seed=5)[0] for f in films]
    reordered = predict_images(model, films[::-1], passes=8, seed=5, batch_size=4)[::-1]
    for t, a, r in zip(together, alone, reordered):
        # equal up to the backbone's float rounding, which depends on the batch (the dropout
        # masks are the film's own; tests/test_uncertainty.py checks them bit for bit)
        np.testing.assert_allclose(t.samples, a.samples, atol=1e-6)
        np.testing.assert_allclose(t.samples, r.samples, atol=1e-6)
    assert not np.allclose(together[0].samples, predict_images(model, films[:1], passes=8,
                                                               seed=6)[0].samples, atol=1e-3)


# --- the readout: calibrated probabilities, calls, OOD -------------------------------------------

def _calibrated(path):
    """A simple_cnn checkpoint and its readout (cxr.readout.fit_readout on made-up validation
    labels and the features of noise films: these tests check the plumbing, not skill)."""
    from cxr.hashing import file_sha256
    from cxr.readout import fit_readout, save_readout
    torch.manual_seed(0)
    model = create_model("simple_cnn", input_size=32)
    ckpt = save_checkpoint(path, model, {})
    rng = np.random.default_rng(0)
    y = (rng.random((80, 14)) < 0.3).astype(np.uint8)
    y[0], y[1] = 1, 0
    p = np.clip(0.5 * y + 0.5 * rng.random(y.shape), 0, 1)
    with torch.no_grad():
        feats = model.eval().pool_features(model.forward_features(
            torch.rand(100, 3, 32, 32, generator=torch.Generator().manual_seed(1)))).numpy()
    save_readout(fit_readout(y, p, feats[:30], feats[30:], file_sha256(ckpt), FINDINGS), ckpt)
    return ckpt


@pytest.mark.parametrize("point", ["youden", "specificity"])
def test_with_a_readout_the_csv_has_calibrated_probabilities_calls_and_ood(tmp_path, folder,
                                                                           capsys, point):
    from cxr.evaluation.predictions import READOUT_COLUMNS, read_predictions
    from cxr.readout import CALLS, load_readout
    ckpt = _calibrated(tmp_path / "best.pt")
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(ckpt), str(folder), "--passes", "6",
                 "--operating-point", point, "--out", str(out)]) == 0
    df = pd.read_csv(out / "predictions.csv", keep_default_na=False)
    assert list(df.columns)[-len(READOUT_COLUMNS) - 1:] == [*READOUT_COLUMNS, "source"]
    assert (df["operating_point"] == point).all()
    assert df[[f"call_{f}" for f in FINDINGS]].isin(CALLS).all(axis=None)
    # the CLI's numbers are the Python API's for the same films, names and seed
    model, _ = load_model(ckpt)
    readout = load_readout(ckpt)
    api = {p.name: p for p in predict_images(model, list(df["source"]), passes=6, seed=0,
                                             readout=readout, operating_point=point)}
    for _, row in df.iterrows():
        p = api[row["Image Index"].rsplit("/", 1)[-1]]  # the key is sub/..., the name its tail
        np.testing.assert_allclose(row[[f"cal_{f}" for f in FINDINGS]].astype(float),
                                   p.calibrated, atol=1e-6)
        assert row[[f"call_{f}" for f in FINDINGS]].tolist() == p.calls
        assert row["ood_score"] == pytest.approx(p.ood_score, abs=1e-4)
        assert row["ood"] == p.ood_flag == (p.ood_score > readout.ood.threshold)
    preds = read_predictions(out / "predictions.csv")  # the strict reader takes it back
    assert preds.readout.operating_point == point and preds.readout.calls.shape == (4, 14)
    summary = json.loads((out / "readout.json").read_text())
    assert summary["available"] is True and summary["operating_point"] == point
    assert summary["ood"]["threshold"] == pytest.approx(readout.ood.threshold)
    assert summary["points"]["Effusion"] == readout.points[point]["Effusion"]
    text = capsys.readouterr().out
    assert f"{int(df['ood'].sum())} out of distribution (OOD score > " in text
    assert f"calls at the {point} operating point" in text


def test_without_a_readout_every_output_says_none_is_available(checkpoint, folder, tmp_path,
                                                               capsys):
    from cxr.evaluation.predictions import read_predictions
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(checkpoint), str(folder), "--passes", "3",
                 "--out", str(out)]) == 0
    note = "no calibration / operating points / OOD guard available for this checkpoint"
    df = pd.read_csv(out / "predictions.csv")
    assert not [c for c in df.columns if c.startswith(("cal_", "call_", "ood"))]
    assert read_predictions(out / "predictions.csv").readout is None
    summary = json.loads((out / "readout.json").read_text())
    assert summary["available"] is False and note in summary["note"]
    assert f"cxr calibrate --checkpoint {checkpoint}" in summary["note"]
    assert note in capsys.readouterr().out


def test_a_readout_of_another_checkpoint_is_an_error(tmp_path, folder, capsys):
    ckpt = _calibrated(tmp_path / "best.pt")
    with open(ckpt, "ab") as f:  # retrained after calibration
        f.write(b"\0")
    assert main(["predict", "--checkpoint", str(ckpt), str(folder), "--passes", "2",
                 "--out", str(tmp_path / "out")]) != 0
    assert "best.readout.pt was fitted for checkpoint sha256" in capsys.readouterr().err
    assert not (tmp_path / "out" / "predictions.csv").exists()


# --- every input accounted for ------------------------------------------------------------------

def test_find_inputs_puts_every_file_in_exactly_one_list(tmp_path):
    root = tmp_path / "export"
    (root / "a" / ".cache").mkdir(parents=True)
    (root / "b").mkdir()
    for rel in ("a/1.dcm", "a/UID.1.2.3", "a/.hidden.png", "a/.cache/x.png", "b/report.pdf",
                "b/film.png"):
        (root / rel).write_bytes(b"x")
    (root / "link-to-a").symlink_to(root / "a", target_is_directory=True)
    (root / "b" / "dangling").symlink_to(root / "nowhere")
    os.mkfifo(root / "b" / "pipe")
    found = find_inputs([root, root / "b" / "film.png", tmp_path / "missing.png"],
                        exclude=["*.pdf"])
    rel = lambda paths: sorted(str(Path(p).relative_to(root)) for p in paths)  # noqa: E731
    assert rel(found.files) == ["a/1.dcm", "a/UID.1.2.3", "b/dangling", "b/film.png", "b/pipe"]
    assert rel(found.ignored) == ["a/.cache/x.png", "a/.hidden.png", "b/report.pdf"]
    assert [(Path(p).name, reason.split(",")[0]) for p, reason in found.errors] == [
        ("link-to-a", "a link to a folder"), ("missing.png", "no such file or folder")]
    assert found.total == 10  # film.png, named twice, counts once


def fuzz_folder(root: Path, seed: int = 0) -> tuple[int, int]:
    """Seeded bit flips, truncations and splices of PNG, JPEG and DICOM (uncompressed, RLE,
    JPEG-LS, JPEG Lossless, JPEG 2000) under names with and without extensions, plus an empty
    file, text, a hidden file and folder, excluded files and links; (files made, ignored)."""
    rng = np.random.default_rng(seed)
    film = (np.random.default_rng(1).random((40, 48)) * 255).astype(np.uint8)
    sources = {"png": png_bytes(film, "PNG"), "jpg": png_bytes(film, "JPEG"),
               **{f"dcm-{s}": D.encode(D.dataset(film.astype(np.uint16) * 16), s)
                  for s in ("explicit", "rle", "jpeg-ls", "jpeg-lossless-sv1", "jpeg2000")}}
    (root / "deep" / ".git").mkdir(parents=True)
    made = []

    def put(rel: str, data: bytes) -> None:
        (root / rel).write_bytes(data)
        made.append(rel)

    for i in range(36):
        kind, data = list(sources.items())[i % len(sources)]
        data = bytearray(data)
        how = ("flip", "cut", "splice", "intact")[i % 4]
        if how == "flip":
            for pos in rng.integers(0, len(data), size=int(rng.integers(1, 40))):
                data[pos] ^= 1 << int(rng.integers(0, 8))
        elif how == "cut":
            data = data[:int(rng.integers(0, len(data)))]
        elif how == "splice":
            other = list(sources.values())[int(rng.integers(0, len(sources)))]
            data = data[:int(rng.integers(0, len(data)))] + other[int(rng.integers(0, len(other))):]
        suffix = "" if i % 3 == 0 else "." + kind.split("-")[0]  # a third without extension
        put(f"{'deep/' if i % 5 == 0 else ''}{how}_{i:02d}{suffix}", bytes(data))
    put("empty", b"")
    put("README", b"Export of 36 films\n")
    ignored = ["deep/.git/HEAD", ".DS_Store", "notes.skip", "deep/list.skip"]
    for rel in ignored:
        put(rel, b"ref: refs/heads/main\n")
    (root / "films-link").symlink_to(root / "deep", target_is_directory=True)
    (root / "gone.dcm").symlink_to(root / "removed.dcm")
    return len(made) + 2, len(ignored)


def png_bytes(arr: np.ndarray, fmt: str) -> bytes:
    import io
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


SUMMARY = re.compile(r"(\d+) files: (\d+) predicted, (\d+) not usable \(errors\.csv\), "
                     r"(\d+) ignored \(hidden/excluded\)")


def test_a_fuzzed_folder_is_accounted_for_file_by_file(checkpoint, tmp_path, capfd):
    root = tmp_path / "fuzz"
    root.mkdir()
    n_files, n_ignored = fuzz_folder(root)
    out = tmp_path / "out"
    code = main(["predict", "--checkpoint", str(checkpoint), str(root), "--passes", "2",
                 "--batch-size", "8", "--exclude", "*.skip", "--out", str(out)])
    stdout, stderr = capfd.readouterr()
    assert code == 0 and "Traceback" not in stdout + stderr
    total, predicted, unusable, ignored = map(int, SUMMARY.search(stdout).groups())
    assert (total, ignored) == (n_files, n_ignored) and predicted + unusable + ignored == total
    preds, errors = pd.read_csv(out / "predictions.csv"), pd.read_csv(out / "errors.csv")
    assert (len(preds), len(errors)) == (predicted, unusable) and predicted >= 9  # the intact
    assert errors["error"].str.len().min() > 0 and errors["file"].is_unique
    # every file not ignored is in exactly one of the two, by its own path
    every = {os.path.realpath(p) for p in root.rglob("*")
             if not p.is_dir() or p.is_symlink()}
    hidden_or_excluded = {os.path.realpath(p) for p in root.rglob("*")
                          if ".git" in p.parts or p.name.startswith(".")
                          or p.name.endswith(".skip")}
    listed = [os.path.realpath(p) for p in list(preds["source"]) + list(errors["file"])]
    assert len(listed) == len(set(listed)) and set(listed) == every - hidden_or_excluded


# --- compressed DICOM: the same probabilities as the uncompressed pixels ------------------------

@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return create_model("simple_cnn", input_size=32).eval()  # random init, from the registry


FILM12 = (np.random.default_rng(2).random((48, 40)) * 4095).astype(np.uint16)


@pytest.mark.parametrize("syntax", D.LOSSLESS)
def test_each_lossless_syntax_predicts_as_the_uncompressed_film(tiny_model, tmp_path, syntax):
    ds = D.dataset(FILM12, photometric="MONOCHROME1", WindowCenter=2000, WindowWidth=3000,
                   Modality="CR", ViewPosition="PA", BodyPartExamined="CHEST")
    (tmp_path / "plain.dcm").write_bytes(D.encode(ds, "explicit"))
    (tmp_path / "packed.dcm").write_bytes(D.encode(ds, syntax))
    # same seed and name: the same dropout masks (cxr.uncertainty.film_seed)
    [plain] = predict_images(tiny_model, [tmp_path / "plain.dcm"], passes=6, seed=4,
                             names=["film"])
    [packed] = predict_images(tiny_model, [tmp_path / "packed.dcm"], passes=6, seed=4,
                              names=["film"])
    np.testing.assert_allclose(packed.probs, plain.probs, atol=1e-4)
    np.testing.assert_allclose(packed.std, plain.std, atol=1e-4)


@pytest.mark.parametrize("syntax", D.LOSSY)
def test_lossy_syntaxes_are_predicted(tiny_model, tmp_path, syntax):
    pixels, bits = ((FILM12 >> 4).astype(np.uint8), 8) if syntax in D.EIGHT_BIT \
        else (FILM12, 12)
    path = tmp_path / "lossy.dcm"
    path.write_bytes(D.encode(D.dataset(pixels, bits=bits), syntax))
    [p] = predict_images(tiny_model, [path], passes=4)
    assert p.meta["format"] == "DICOM" and np.isfinite(p.probs).all() and p.probs.shape == (14,)


def test_real_lossless_films_predict_as_their_uncompressed_pixels(tiny_model, nih_dir, tmp_path):
    if not (D.SHARED_DICOM / "nih_jpeg_ls.dcm").is_file():
        pytest.skip(f"real DICOM films not found at {D.SHARED_DICOM}; only CI and dev "
                    "machines have them")
    png = np.asarray(Image.open(nih_dir / "images" / "00000100_000.png").convert("L"))
    plain = D.dataset(png.astype(np.uint16) * 16)  # as the README of ../shared/data/dicom says
    (tmp_path / "plain.dcm").write_bytes(D.encode(plain, "explicit"))
    paths = [tmp_path / "plain.dcm", D.SHARED_DICOM / "nih_jpeg_lossless_sv1.dcm",
             D.SHARED_DICOM / "nih_jpeg_ls.dcm"]
    plain, sv1, jpeg_ls = (predict_images(tiny_model, [p], passes=6, seed=1, names=["film"])[0]
                           for p in paths)
    for p in (sv1, jpeg_ls):
        np.testing.assert_allclose(p.probs, plain.probs, atol=1e-4)


# --- nothing of the patient leaks ---------------------------------------------------------------

def test_planted_identifiers_appear_nowhere_in_the_output_or_the_console(checkpoint, tmp_path,
                                                                        capfd, caplog):
    d = tmp_path / "films"
    d.mkdir()
    good = D.dataset(FILM12, Modality="DX", ViewPosition="PA", BodyPartExamined="CHEST")
    (d / "good.dcm").write_bytes(D.encode(good, "jpeg-ls"))
    (d / "good_sv1").write_bytes(D.encode(good, "jpeg-lossless-sv1"))
    (d / "ct.dcm").write_bytes(D.encode(D.dataset(FILM12, Modality="CT"), "rle"))
    (d / "lateral.dcm").write_bytes(D.encode(D.dataset(FILM12, ViewPosition="LL"), "explicit"))
    (d / "named_part.dcm").write_bytes(D.encode(D.dataset(FILM12, BodyPartExamined="OSMUND"),
                                                "explicit"))
    damaged = D.encode(good, "jpeg-ls")
    (d / "damaged.dcm").write_bytes(D.damaged(damaged))
    (d / "cut.dcm").write_bytes(damaged[:-500])
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(checkpoint), str(d), "--passes", "3", "--cam",
                 "--top-k", "2", "--out", str(out)]) == 0
    console = "".join(capfd.readouterr()) + caplog.text
    assert "2 predicted, 5 not usable" in console
    written = sorted(p for p in out.rglob("*") if p.is_file())
    assert len(written) == 3 + 2 * 2  # the two CSVs, readout.json, two overlays per film
    for secret in D.SECRETS:
        assert secret.lower() not in console.lower(), secret
        for path in written:
            assert secret.lower().encode() not in path.read_bytes().lower(), (secret, path)
            assert secret.lower() not in str(path).lower()


def test_samples_writes_each_films_mc_samples_as_plain_npz(checkpoint, folder, tmp_path):
    """--samples DIR: the data of the report's Figure 7 (a histogram of one film's passes)."""
    out, samples = tmp_path / "out", tmp_path / "samples"
    (folder / "again").mkdir()
    Image.fromarray(FILM).save(folder / "again" / "a.png")  # the same name in another folder
    assert main(["predict", "--checkpoint", str(checkpoint), str(folder / "a.png"),
                 str(folder / "b.png"), str(folder / "again"), "--passes", "6", "--seed", "3",
                 "--samples", str(samples), "--out", str(out)]) == 0
    assert sorted(p.name for p in samples.iterdir()) == ["a.npz", "a_1.npz", "b.npz"]
    df = pd.read_csv(out / "predictions.csv").set_index("Image Index")
    model, _ = load_model(checkpoint)
    [direct] = predict_images(model, [folder / "b.png"], passes=6, seed=3)
    with np.load(samples / "b.npz", allow_pickle=False) as z:
        assert z["samples"].shape == (6, 14) and z["samples"].dtype == np.float32
        assert list(z["findings"]) == list(FINDINGS) and str(z["name"]) == "b.png"
        assert int(z["seed"]) == 3
        np.testing.assert_allclose(z["samples"], direct.samples, rtol=1e-6)
        np.testing.assert_allclose(z["mean"], z["samples"].mean(axis=0), rtol=1e-5)
        np.testing.assert_allclose(z["mean"], df.loc["b.png", [f"prob_{f}" for f in FINDINGS]]
                                   .to_numpy(dtype=float), rtol=1e-5)


def test_without_samples_no_samples_are_written(checkpoint, folder, tmp_path):
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(checkpoint), str(folder / "a.png"),
                 "--passes", "4", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["errors.csv", "predictions.csv",
                                                      "readout.json"]
