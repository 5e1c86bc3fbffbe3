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
