"""pages/1_Predict.py: upload -> 14 MC-dropout probabilities, histograms, Grad-CAM; bad uploads
give a message, never a traceback; DICOM identifiers never reach the page."""
from __future__ import annotations

import io
import logging
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from apptest_util import no_exception, page_text
from dashboard_env import film_array, png_bytes

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: dicom_files
import dicom_files as D  # noqa: E402

PAGE = "pages/1_Predict.py"


def probs(at):
    """The probability table (st.dataframe keeps no user key without selections)."""
    frames = [d.value for d in at.dataframe if "probability" in d.value.columns]
    assert len(frames) == 1, f"{len(frames)} probability tables"
    return frames[0]


def upload(at, name: str, data: bytes, mime: str = "application/octet-stream"):
    at.file_uploader(key="film").set_value((name, data, mime))
    return at.run()


def test_without_a_checkpoint_the_page_says_so(app, empty_world):
    at = app(empty_world, PAGE)
    no_exception(at)
    assert any("No trained checkpoint yet" in i.value for i in at.info)


def test_upload_shows_14_probabilities_histograms_and_a_cam(app, world):
    at = app(world, PAGE)
    no_exception(at)
    assert at.selectbox(key="checkpoint").value == "tiny-fusion"  # the best fusion run
    at.slider[0].set_value(5)  # passes (sidebar)
    at = upload(at, "film.png", png_bytes(3), "image/png")
    no_exception(at)
    assert not at.error
    table = probs(at)
    assert len(table) == 14 and set(table["finding"]) == set(world_findings())
    assert table["probability"].between(0, 1).all() and (table["std"] >= 0).all()
    assert table["probability"].is_monotonic_decreasing  # sorted, most likely first
    assert len(at.get("plotly_chart")) == 2  # the bars and the MC histograms
    assert at.selectbox(key="figure_finding").value == table["finding"].iloc[0]
    assert len(at.get("download_button")) == 1  # the report's Figure 7 as a PNG
    captions = [c for img in at.image for c in img.captions]
    top = table["finding"].iloc[0]
    assert any(c.startswith(f"{top}: p = ") for c in captions)  # the Grad-CAM overlay
    banner = [w.value for w in at.warning] + [s.value for s in at.success]
    # uncertain banner or the all-clear, with the image score and the rule in force: the
    # fixture's checkpoints name none, so the report's rule, the default, and the page says so
    assert len(banner) == 1 and "image uncertainty 0." in banner[0]
    assert "rule mean (uncertain when the mean MC-dropout std over the findings > 0.1)" in banner[0]
    assert any("uncertainty rule mean from the default" in c.value for c in at.caption)


def test_without_a_readout_the_page_says_so_and_makes_no_call(app, world):
    at = app(world, PAGE)
    at.slider[0].set_value(3)
    at = upload(at, "film.png", png_bytes(3), "image/png")
    no_exception(at)
    assert any(i.value.startswith("No calibration / operating points / OOD guard available for "
                                  "this checkpoint (run `cxr calibrate --checkpoint")
               for i in at.info)
    assert "call" not in probs(at).columns
    assert not at.error and not any("phantoms" in w.value for w in at.warning)


def _main_order(at) -> list[str]:
    """The main area's elements, top to bottom: 'type: protobuf text' (what the browser draws)."""
    return [f"{node.type}: {node.proto}" for node in _walk(at.main)]


def _walk(node):
    if getattr(node, "proto", None) is not None and not getattr(node, "children", None):
        yield node
    for child in getattr(node, "children", {}).values():
        yield from _walk(child)


def test_a_real_nih_film_on_a_model_of_phantoms_is_out_of_distribution_before_any_number(
        app, calibrated_world, nih_dir):
    film = nih_dir / "images" / "00000100_000.png"
    at = app(calibrated_world, PAGE)
    at.slider[0].set_value(5)
    at = upload(at, film.name, film.read_bytes(), "image/png")
    no_exception(at)
    [error] = at.error
    assert "This film is unlike the films this model was trained on (OOD score " in error.value
    assert "its numbers are not to be trusted" in error.value
    assert any("learned from drawn phantoms" in w.value for w in at.warning)
    order = _main_order(at)
    first = lambda text: next(i for i, p in enumerate(order) if text in p)  # noqa: E731
    # the warnings come before the film's caption, the bars and the table: before any number
    assert first("not to be trusted") < first("drawn phantoms") < first("success: ") \
        < first("plotly_chart: ") < first("dataframe: ")


def test_a_synthetic_film_gets_calibrated_probabilities_and_calls_and_no_ood_warning(
        app, calibrated_world):
    from cxr.checkpoint import load_model
    from cxr.dashboard import analysis
    from cxr.readout import load_readout
    film = calibrated_world.synthetic_film
    at = app(calibrated_world, PAGE)
    at.slider[0].set_value(5)
    at = upload(at, film.name, film.read_bytes(), "image/png")
    no_exception(at)
    assert not at.error  # a typical film of the data the readout was fitted on
    assert any("learned from drawn phantoms" in w.value for w in at.warning)
    ckpt = calibrated_world.run_dir / "best.pt"
    plain, _ = load_model(ckpt, "cpu")
    readout = load_readout(ckpt)
    expected = analysis.analyse(plain, analysis.read_upload(film.read_bytes()).pixels, passes=5,
                                name=film.name, readout=readout)
    for point in ("youden", "sensitivity", "specificity"):
        at.selectbox(key="point").set_value(point)
        at.run()
        no_exception(at)
        table = probs(at).set_index("finding").loc[list(expected.labels)]
        np.testing.assert_allclose(table["calibrated"], expected.calibrated, atol=1e-4)
        assert table["call"].tolist() == expected.calls(point)
        val = [readout.points[point][f]["val_sensitivity"] for f in expected.labels]
        np.testing.assert_allclose(table["val sensitivity"], np.array(val, dtype=float))
        # the validation rates' intervals, and the point's caption naming its confidence
        from cxr.dashboard.points import interval_text, point_caption
        assert table["val specificity (95% CI)"].tolist() == [
            interval_text(readout.points[point][f], "specificity") for f in expected.labels]
        assert any(c.value == point_caption(readout, point) for c in at.caption)
    assert any(f"OOD score {expected.ood_score:.2f} (threshold " in c.value for c in at.caption)


def test_the_calibrated_world_tells_real_films_from_phantoms(calibrated_world, nih_dir):
    """What the OOD tests above rely on, over all 56 real films (dashboard_env's docstring has
    the measured numbers): the tiny demo-like model's OOD score flags nearly every real NIH
    film, 00000100_000.png clearly, and few of its own synthetic test films."""
    import pandas as pd
    from cxr.checkpoint import load_model
    from cxr.predict import predict_images
    from cxr.readout import load_readout
    ckpt = calibrated_world.run_dir / "best.pt"
    model, _ = load_model(ckpt)
    readout = load_readout(ckpt)
    split = pd.read_csv(calibrated_world.run_dir / "split.csv")
    test = [calibrated_world.data / "synth" / "images" / n
            for n in split.loc[split["split"] == "test", "image"]]
    real = sorted((nih_dir / "images").glob("*.png"))
    score = {p.name: p.ood_score for p in predict_images(model, real + test, passes=2,
                                                         readout=readout)}
    t = readout.ood.threshold
    assert sum(score[p.name] > t for p in real) >= 0.9 * len(real)
    assert score["00000100_000.png"] > 1.2 * t  # the browser test's film, with a margin
    assert sum(score[p.name] > t for p in test) <= 0.1 * len(test)
    assert score[calibrated_world.synthetic_film.name] < t


def world_findings():
    from cxr.labels import FINDINGS
    return FINDINGS


def test_model_is_loaded_once_for_two_uploads(app, world, monkeypatch):
    import streamlit as st
    import cxr.checkpoint as ckpt
    st.cache_resource.clear()
    calls = []
    real = ckpt.load_model
    monkeypatch.setattr(ckpt, "load_model", lambda *a, **k: calls.append(a) or real(*a, **k))
    at = app(world, PAGE)
    at.slider[0].set_value(3)
    upload(at, "a.png", png_bytes(1), "image/png")
    upload(at, "b.png", png_bytes(2), "image/png")
    no_exception(at)
    assert len(probs(at)) == 14
    assert len(calls) == 1


def test_each_film_gets_its_own_features_and_the_plain_models_numbers(app, world):
    """The page's model is an InferenceModel (ONNX Runtime backbone, feature maps kept per
    film): each upload's probabilities and stds are the plain torch model's, and the second
    film is never served the first one's features."""
    from cxr.checkpoint import load_model
    from cxr.dashboard import analysis
    plain, _ = load_model(world.run_dir / "best.pt", "cpu")
    at = app(world, PAGE)
    at.slider[0].set_value(4)
    tables = []
    for seed in (7, 8):
        at = upload(at, f"film{seed}.png", png_bytes(seed), "image/png")
        no_exception(at)
        table = probs(at).set_index("finding")
        expected = analysis.analyse(plain, analysis.read_upload(png_bytes(seed)).pixels, passes=4,
                                    name=f"film{seed}.png")  # its masks: the upload's name
        labels = list(expected.labels)
        np.testing.assert_allclose(table.loc[labels, "probability"], expected.mean, atol=1e-4)
        np.testing.assert_allclose(table.loc[labels, "std"], expected.std, atol=1e-4)
        tables.append(table.loc[labels, "probability"].to_numpy())
    assert not np.allclose(tables[0], tables[1], rtol=0, atol=1e-7)


def test_opacity_and_findings_to_explain(app, world):
    at = app(world, PAGE)
    at.slider[0].set_value(3)
    upload(at, "a.png", png_bytes(1), "image/png")
    [explain] = at.multiselect
    explain.set_value(["Effusion", "Mass"])
    at.slider(key="opacity").set_value(0.8)
    at.run()
    no_exception(at)
    captions = [c for img in at.image for c in img.captions]
    assert sum(c.startswith(("Effusion: p", "Mass: p")) for c in captions) == 2


def test_the_chosen_findings_histogram_downloads_as_a_png(app, world, monkeypatch):
    """The report's Figure 7: the button's data is drawn when clicked (a deferred callable);
    Streamlit's own media manager is watched for the callable the page registers."""
    from PIL import Image
    from streamlit.runtime.media_file_manager import MediaFileManager
    registered = {}
    add_deferred = MediaFileManager.add_deferred

    def watched(self, data_callable, mimetype, coordinates, file_name=None, **kwargs):
        file_id = add_deferred(self, data_callable, mimetype, coordinates, file_name, **kwargs)
        registered[file_id] = data_callable, file_name
        return file_id
    monkeypatch.setattr(MediaFileManager, "add_deferred", watched)
    at = app(world, PAGE)
    at.slider[0].set_value(6)  # passes
    at = upload(at, "film.png", png_bytes(2), "image/png")
    at.selectbox(key="figure_finding").set_value("Hernia")
    at.run()
    no_exception(at)
    [button] = at.get("download_button")
    draw, file_name = registered[button.proto.deferred_file_id]
    image = Image.open(io.BytesIO(draw()))
    assert image.format == "PNG" and image.size == (768, 480)
    assert file_name == "mc_histogram_Hernia.png"


def test_a_new_film_is_explained_by_its_own_top_finding(app, world):
    """The Grad-CAM choice belongs to the film: after a second upload the default is the new
    film's top finding, not the findings chosen for the first one."""
    at = app(world, PAGE)
    at.slider[0].set_value(3)
    upload(at, "a.png", png_bytes(1), "image/png")
    at.multiselect[0].set_value(["Hernia"])
    at.run()
    upload(at, "b.png", png_bytes(2), "image/png")
    no_exception(at)
    top = probs(at).sort_values("probability", ascending=False)["finding"].iloc[0]
    assert at.multiselect[0].value == [top]


# -- bad uploads ---------------------------------------------------------------------------------

def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height (200 MP here) with a token IDAT: no 200 MB needed."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def dicom_bytes(with_pixels: bool = True, view: str = "PA", patient: str = "Doe^Jane",
                patient_id: str = "PID-7731") -> bytes:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = patient, patient_id, "19700101"
    ds.InstitutionName = "St Elsewhere"
    ds.Modality, ds.ViewPosition = "DX", view
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    if with_pixels:
        pixels = (np.random.default_rng(0).random((80, 80)) * 4095).astype(np.uint16)
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = pixels.tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def jpeg_bytes() -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.full((64, 64), 128, np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


BAD = {
    "empty": (b"", "empty"),
    "not an image": (b"Patient list\nname,id\n", "not an image"),
    "truncated png": (png_bytes(5)[:300], "truncated"),
    "corrupt jpeg": (jpeg_bytes()[:200] + b"\0" * 50, "corrupt"),
    "200 megapixel png": (png_header_only(20_000, 10_000), "too large"),
    "dicom without pixel data": (dicom_bytes(with_pixels=False), "no pixel data"),
    "lateral dicom": (dicom_bytes(view="LL"), "lateral view"),
    "ct dicom": (D.encode(D.dataset(film_array(1, 64), bits=8, Modality="CT",
                                    BodyPartExamined="HEAD"), "rle"), "not a radiograph"),
    "knee dicom": (D.to_bytes(D.dataset(film_array(1, 64), bits=8, Modality="CR",
                                        BodyPartExamined="KNEE")), "not the chest"),
    "multi-frame dicom": (D.to_bytes(D.dataset(np.stack([film_array(1, 64)] * 2), bits=8)),
                          "multi-frame"),
    "damaged jpeg-ls dicom": (D.damaged(D.encode(D.dataset(D.NOISY12), "jpeg-ls")),
                              "cannot decode"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_uploads_give_a_clear_message_and_the_page_keeps_working(app, world, case):
    data, expected = BAD[case]
    at = app(world, PAGE)
    at = upload(at, "upload.bin", data)
    no_exception(at)
    assert len(at.error) == 1 and expected in at.error[0].value.lower(), at.error
    assert at.error[0].value.startswith("Cannot analyse this file")
    assert any("frontal chest radiograph" in c.value for c in at.caption)  # what it accepts
    # ...and a good film right after works in the same session
    at.slider[0].set_value(3)
    at = upload(at, "good.png", png_bytes(4), "image/png")
    no_exception(at)
    assert not at.error and len(probs(at)) == 14


def test_dicom_is_read_by_content_and_identifiers_never_reach_the_page(app, world):
    at = app(world, PAGE)
    at.slider[0].set_value(3)
    at = upload(at, "IMG0001.jpg", dicom_bytes(patient="Doe^Jane", patient_id="PID-7731"))
    no_exception(at)
    assert not at.error and len(probs(at)) == 14
    assert any("DICOM" in c for img in at.image for c in img.captions)
    text = page_text(at)
    for secret in ("Doe", "Jane", "PID-7731", "19700101", "St Elsewhere"):
        assert secret not in text


def test_compressed_dicom_uploads_leave_no_identifier_on_the_page_in_logs_or_files(
        app, fresh_world, caplog, capfd):
    """Planted identifiers (name, IDs, birth date, accession, institution, referring physician)
    in a good JPEG-LS film, a CT, and a film whose body-part tag repeats the patient's name:
    not in the page, not in the log or console, not in any file under the app's folders."""
    caplog.set_level(logging.DEBUG)
    film = (film_array(7, 96).astype(np.uint16) * 16)
    uploads = {"film.dcm": D.encode(D.dataset(film, ViewPosition="PA"), "jpeg-ls"),
               "ct.dcm": D.encode(D.dataset(film, Modality="CT"), "jpeg-lossless-sv1"),
               "part.dcm": D.to_bytes(D.dataset(film, BodyPartExamined="QUARENDON"))}
    at = app(fresh_world, PAGE)
    at.slider[0].set_value(3)
    texts = []
    for name, data in uploads.items():
        at = upload(at, name, data)
        no_exception(at)
        texts.append(page_text(at))
    assert "Cannot analyse this file" not in texts[0] and "Grad-CAM" in texts[0]
    assert "not a radiograph" in texts[1] and "[withheld]" in texts[2]
    console = "".join(capfd.readouterr()) + caplog.text
    files = [p for p in fresh_world.root.rglob("*") if p.is_file()]
    assert files  # the runs, the dataset and the worklist the page reads
    for secret in D.SECRETS:
        for text in texts + [console]:
            assert secret.lower() not in text.lower(), secret
        for path in files:
            assert secret.lower().encode() not in path.read_bytes().lower(), (secret, path)


def test_the_page_says_which_readout_is_in_force(app, world, calibrated_world):
    at = app(calibrated_world, PAGE)
    no_exception(at)
    assert any(c.value.startswith("Readout in force: fitted on the run's validation split")
               for c in at.caption)
    at = app(world, PAGE)  # a run without a readout
    assert any(c.value.startswith("No readout in force") for c in at.caption)
