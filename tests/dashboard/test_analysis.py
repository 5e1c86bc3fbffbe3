"""cxr/dashboard/analysis.py: upload checks, MC-dropout analysis and head-only Grad-CAM."""
from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "app"))
import dashboard_env  # noqa: E402

from cxr.dashboard import analysis  # noqa: E402
from cxr.explain import cam_maps  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return dashboard_env.tiny_model("fusion").eval()


@pytest.fixture(scope="module")
def pixels():
    return dashboard_env.film_array(3, 96).astype(np.float32) / 255


def test_read_upload_decodes_by_content_and_keeps_only_safe_meta():
    img = analysis.read_upload(dashboard_env.png_bytes(1), "scan.dcm")  # a PNG named .dcm
    assert img.pixels.shape == (96, 96) and img.pixels.dtype == np.float32
    assert set(img.meta) <= set(analysis.SAFE_META) and img.meta["format"] == "PNG"


@pytest.mark.parametrize("data, message", [
    (b"", "empty"), (b"hello", "not an image"), (dashboard_env.png_bytes(1)[:200], "truncated")])
def test_read_upload_errors_name_the_file_and_the_problem(data, message):
    with pytest.raises(analysis.UploadError, match=message) as info:
        analysis.read_upload(data, "upload.png")
    assert "upload.png" in str(info.value)


def test_lateral_views_are_refused(monkeypatch):
    from cxr.data.images import LoadedImage
    fake = LoadedImage(np.zeros((64, 64), np.float32), {"format": "DICOM", "view": "LL"})
    monkeypatch.setattr(analysis, "load_image", lambda data, name: fake)
    with pytest.raises(analysis.UploadError, match="lateral view"):
        analysis.read_upload(b"x", "lat.dcm")
    fake.meta["view"] = "PA"
    assert analysis.read_upload(b"x", "pa.dcm").meta["view"] == "PA"


def test_tiny_images_are_refused():
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 400), np.uint8)).save(buf, format="PNG")
    with pytest.raises(analysis.UploadError, match="at least 16x16"):
        analysis.read_upload(buf.getvalue(), "strip.png")


def test_analyse_is_seeded_and_shaped(model, pixels):
    a = analysis.analyse(model, pixels, passes=7)
    b = analysis.analyse(model, pixels, passes=7)
    assert a.mean.shape == a.std.shape == (14,) and a.samples.shape == (7, 14)
    np.testing.assert_array_equal(a.samples, b.samples)  # same film, same numbers
    np.testing.assert_allclose(a.samples.mean(axis=0), a.mean, atol=1e-6)
    assert a.std.max() > 0  # dropout is on during the passes
    table = a.table()
    assert len(table) == 14 and table["probability"].is_monotonic_decreasing
    assert a.uncertain == [a.labels[k] for k in range(14) if a.std[k] > a.threshold]
    assert a.rule == "mean" and a.score == pytest.approx(float(a.std.mean()))
    assert a.flagged == (a.score > a.threshold)
    by_any = analysis.analyse(model, pixels, passes=7, rule="any", threshold=float(a.std.max()) / 2)
    np.testing.assert_array_equal(by_any.std, a.std)
    assert by_any.score == pytest.approx(float(a.std.max())) and by_any.flagged
    assert a.top(3) == list(np.argsort(-a.mean)[:3])
    assert not any(m.training for m in model.modules())  # modes restored


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """(simple_cnn, its checkpoint, its readout): fitted on made-up labels and noise films'
    features (the plumbing, not skill)."""
    import torch
    from cxr.checkpoint import save_checkpoint
    from cxr.hashing import file_sha256
    from cxr.labels import FINDINGS
    from cxr.readout import fit_readout, load_readout, save_readout
    model = dashboard_env.tiny_model("simple_cnn").eval()
    ckpt = save_checkpoint(tmp_path_factory.mktemp("cal") / "best.pt", model, {})
    rng = np.random.default_rng(0)
    y = (rng.random((80, 14)) < 0.3).astype(np.uint8)
    y[0], y[1] = 1, 0
    with torch.no_grad():
        feats = model.pool_features(model.forward_features(torch.rand(
            60, 3, 64, 64, generator=torch.Generator().manual_seed(0)))).numpy()
    save_readout(fit_readout(y, np.clip(0.4 * y + 0.6 * rng.random(y.shape), 0, 1), feats[:20],
                             feats[20:], file_sha256(ckpt), FINDINGS), ckpt)
    return model, ckpt, load_readout(ckpt)


def test_the_page_and_cxr_predict_give_a_film_the_same_numbers(calibrated, pixels, tmp_path):
    """analyse(name=...) draws the film's dropout masks as `cxr predict` does for that file
    name (cxr.uncertainty.film_seeds_for), and applies the same readout."""
    from PIL import Image
    from cxr.predict import predict_images
    model, _, readout = calibrated
    path = tmp_path / "upload.png"
    Image.fromarray((pixels * 255).round().astype(np.uint8)).save(path)
    film = analysis.read_upload(path.read_bytes(), path.name).pixels
    for point in ("youden", "specificity"):
        a = analysis.analyse(model, film, passes=9, name=path.name, readout=readout)
        [p] = predict_images(model, [path], passes=9, readout=readout, operating_point=point)
        np.testing.assert_allclose(a.samples, p.samples, atol=1e-6)
        np.testing.assert_allclose(a.calibrated, p.calibrated, atol=1e-6)
        assert a.calls(point) == p.calls
        assert (a.ood_score, a.ood_flag) == (pytest.approx(p.ood_score, abs=1e-4), p.ood_flag)
    other = analysis.analyse(model, film, passes=9, name="another.png", readout=readout)
    assert not np.allclose(other.samples, a.samples)  # another name, other masks


def test_with_a_readout_the_table_has_calibrated_p_calls_and_validation_rates(calibrated, pixels):
    model, _, readout = calibrated
    a = analysis.analyse(model, pixels, passes=7, name="f.png", readout=readout)
    table = a.table("sensitivity")
    assert list(table.columns) == ["finding", "calibrated", "std", "call", "threshold",
                                   "val sensitivity", "val specificity",
                                   "val sensitivity (95% CI)", "val specificity (95% CI)",
                                   "probability"]
    assert table["calibrated"].is_monotonic_decreasing
    row = table.set_index("finding").loc["Effusion"]
    k = a.labels.index("Effusion")
    assert row["call"] == a.calls("sensitivity")[k]
    point = readout.points["sensitivity"]["Effusion"]
    assert (row["threshold"], row["val sensitivity"], row["val specificity"]) == pytest.approx(
        (point["threshold"], point["val_sensitivity"], point["val_specificity"]))
    assert row["val sensitivity"] >= 0.9  # the high-sensitivity point hit its validation target
    lo, hi = point["val_sensitivity_ci"]  # and says how sure that is
    assert row["val sensitivity (95% CI)"] == \
        f"{point['val_sensitivity']:.2f} (95% CI {lo:.2f}-{hi:.2f})"
    np.testing.assert_allclose(a.shown_mean, a.calibrated)
    np.testing.assert_allclose(a.shown_samples, readout.calibrate(a.samples))
    assert a.top(1) == [int(np.argmax(a.calibrated))]


def test_notices_before_any_number(calibrated, pixels):
    import dataclasses
    model, ckpt, readout = calibrated
    plain = analysis.analyse(model, pixels, passes=3)
    [info] = analysis.notices(plain, synthetic=False, checkpoint=ckpt)
    assert info.kind == "info" and info.text.startswith("No calibration / operating points / OOD")
    assert f"cxr calibrate --checkpoint {ckpt}" in info.text
    inside = dataclasses.replace(readout, ood=dataclasses.replace(readout.ood, threshold=1e9))
    assert analysis.notices(analysis.analyse(model, pixels, passes=3, readout=inside), None) == []
    outside = dataclasses.replace(readout, ood=dataclasses.replace(readout.ood, threshold=0.5))
    a = analysis.analyse(model, pixels, passes=3, readout=outside)
    error, warning = analysis.notices(a, synthetic=True)
    assert error.kind == "error" and warning.kind == "warning"  # the OOD warning comes first
    assert (f"unlike the films this model was trained on (OOD score {a.ood_score:.2f} > "
            "threshold 0.50): its numbers are not to be trusted") in error.text
    assert "learned from drawn phantoms" in warning.text


def test_explain_gives_input_sized_maps_and_leaves_no_grad(model, pixels):
    findings = ["Effusion", "Mass", "Nodule"]
    ours = analysis.explain(model, pixels, findings)
    direct = cam_maps(model, analysis.to_input(model, pixels), findings)
    for f in findings:
        assert ours[f].shape == (64, 64) and np.isfinite(ours[f]).all()
        np.testing.assert_array_equal(ours[f], direct[f])
    assert all(p.grad is None for p in model.parameters())
    assert analysis.explain(model, pixels, []) == {}


def test_display_film_shrinks_large_films_only():
    big = np.zeros((3000, 2000), np.float32)
    assert analysis.display_film(big).shape == (1024, 683)
    small = np.zeros((500, 400), np.float32)
    assert analysis.display_film(small) is small
