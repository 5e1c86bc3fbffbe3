"""cxr/readout.py: the call rule, the sidecar (versioned, keyed by the checkpoint's sha256,
weights_only), and predict_images' fields with and without a readout."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cxr.checkpoint import save_checkpoint
from cxr.hashing import file_sha256
from cxr.labels import FINDINGS
from cxr.readout import (CALLS, FORMAT, VERSION, ReadoutError, call_findings, fit_readout,
                         load_readout, readout_path, save_readout)
from cxr.rundir import RunDir

SIZE = 32


@pytest.fixture(scope="module")
def model():
    from cxr.models import create_model
    torch.manual_seed(0)
    return create_model("simple_cnn", input_size=SIZE, hidden=16).eval()


@pytest.fixture
def checkpoint(model, tmp_path):
    return save_checkpoint(tmp_path / "best.pt", model, {"config": {}, "metrics": {}})


def _features(model, n, seed):
    x = torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model.pool_features(model.forward_features(x)).numpy()


def _fit(model, checkpoint, sha=None):
    rng = np.random.default_rng(0)
    y = (rng.random((200, len(FINDINGS))) < 0.3).astype(np.uint8)
    y[0], y[1] = 1, 0
    p = np.clip(0.6 * y + 0.4 * rng.random(y.shape), 0, 1) ** 2  # ranks well, miscalibrated
    return fit_readout(y, p, _features(model, 30, 1), _features(model, 60, 2),
                       sha or file_sha256(checkpoint), FINDINGS,
                       provenance={"split": "val", "seed": 0, "val_images": ["a.png"]})


def test_call_rule_on_hand_made_samples():
    t = np.array([0.5, 0.5, 0.5, 0.5, np.nan])
    samples = np.empty((10, 1, 5))
    samples[:, 0, 0] = 0.8                      # every pass above t
    samples[:, 0, 1] = 0.2                      # every pass below
    samples[:, 0, 2] = [0.3] * 5 + [0.7] * 5    # passes split around t
    samples[:, 0, 3] = [0.4] + [0.8] * 9        # one stray pass: below the 10th percentile
    samples[:, 0, 4] = 0.9                      # no threshold for this finding
    mean = samples.mean(axis=0)
    assert call_findings(mean, t, samples)[0].tolist() == \
        ["positive", "negative", "uncertain", "positive", "n/a"]
    # without MC samples only the side of the mean counts
    assert call_findings(mean, t)[0].tolist() == \
        ["positive", "negative", "positive", "positive", "n/a"]
    exactly = np.full((4, 1, 1), 0.5)  # every pass exactly at t: positive (p >= t), agreed
    assert call_findings(exactly.mean(axis=0), np.array([0.5]), exactly)[0].tolist() == ["positive"]


def test_sidecar_round_trip_is_plain_tensors_and_json(model, checkpoint):
    readout = _fit(model, checkpoint)
    path = save_readout(readout, checkpoint)
    assert path == readout_path(checkpoint) == checkpoint.with_name("best.readout.pt")
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == FORMAT and raw["version"] == VERSION
    assert raw["checkpoint_sha256"] == file_sha256(checkpoint)
    assert raw["tensors"]["ood_precision"].dtype == torch.float64
    meta = raw["meta"]
    assert set(meta) == {"labels", "calibration", "operating_points", "ood", "provenance"}
    assert set(meta["operating_points"]["youden"]["Effusion"]) == \
        {"threshold", "val_sensitivity", "val_specificity", "val_sensitivity_ci",
         "val_specificity_ci", "val_sensitivity_lcb", "val_specificity_lcb", "n_val_positive",
         "n_val_negative"}
    assert meta["operating_points"]["sensitivity"]["Effusion"]["target_met"] in (True, False)
    assert meta["ood"]["share"] == 0.95 and meta["calibration"]["method"] == "temperature"
    assert meta["ood"]["threshold_method"] == "conformal" and meta["ood"]["n_calibration"] >= 30
    loaded = load_readout(checkpoint)
    mean = np.random.default_rng(3).random((4, len(FINDINGS)))
    feats = _features(model, 4, 4)
    a, b = readout.apply(mean, feats), loaded.apply(mean, feats)
    np.testing.assert_allclose(a.calibrated, b.calibrated)
    np.testing.assert_allclose(a.ood_score, b.ood_score)
    assert all((a.calls[p] == b.calls[p]).all() for p in a.calls)
    assert loaded.provenance["val_images"] == ["a.png"]


def test_a_readout_from_before_the_conformal_threshold_and_interval_still_loads(model,
                                                                               checkpoint):
    readout = _fit(model, checkpoint)
    payload = readout.to_payload()
    for key in ("threshold_method", "n_calibration", "expected_flag_rate",
                "flag_rate_interval", "calibration"):
        del payload["meta"]["ood"][key]  # what version 1 readouts held before
    for point in payload["meta"]["operating_points"].values():
        for row in (point.values() if isinstance(point, dict) else ()):
            for key in [k for k in row if k not in ("threshold", "val_sensitivity",
                                                    "val_specificity")]:
                del row[key]
    with open(readout_path(checkpoint), "wb") as f:
        torch.save(payload, f)
    old = load_readout(checkpoint)
    assert old.ood.method == "quantile" and old.ood.threshold == readout.ood.threshold
    said = old.describe("sensitivity")
    assert said["ood"]["flag_rate_interval"] is None and said["ood"]["expected_flag_rate"] == \
        pytest.approx(0.05)
    assert "no finite-sample promise" in said["ood"]["note"]
    assert set(said["points"]["Effusion"]) == {"threshold", "val_sensitivity", "val_specificity"}
    new = readout.describe("sensitivity")["ood"]
    lo, hi = new["flag_rate_interval"]
    assert new["threshold_method"] == "conformal" and lo < new["expected_flag_rate"] < hi


def test_operating_points_are_on_the_calibrated_scale(model, checkpoint):
    readout = _fit(model, checkpoint)
    rng = np.random.default_rng(0)  # the same validation data _fit drew
    y = (rng.random((200, len(FINDINGS))) < 0.3).astype(np.uint8)
    y[0], y[1] = 1, 0
    p = np.clip(0.6 * y + 0.4 * rng.random(y.shape), 0, 1) ** 2
    cal = readout.calibrate(p)
    t = readout.thresholds("sensitivity")
    for k, f in enumerate(FINDINGS):  # the stored rate is the rate on the calibrated scale
        sens = ((cal[:, k] >= t[k]) & (y[:, k] == 1)).sum() / y[:, k].sum()
        assert sens >= 0.9 and sens == readout.points["sensitivity"][f]["val_sensitivity"]
        assert t[k] in cal[:, k] and (t[k] not in p[:, k]) == (readout.calibration.a[k] != 1)
    with pytest.raises(ValueError, match="operating point 'best'"):
        readout.thresholds("best")


def test_no_sidecar_is_none_and_another_checkpoints_is_an_error(model, checkpoint, tmp_path):
    assert load_readout(checkpoint) is None
    save_readout(_fit(model, checkpoint), checkpoint)
    old_sha = file_sha256(checkpoint)
    torch.manual_seed(1)  # "retrained": a different best.pt beside the old sidecar
    from cxr.models import create_model
    save_checkpoint(checkpoint, create_model("simple_cnn", input_size=SIZE, hidden=16),
                    {"config": {}, "metrics": {}})
    with pytest.raises(ReadoutError) as err:
        load_readout(checkpoint)
    assert old_sha[:12] in str(err.value) and file_sha256(checkpoint)[:12] in str(err.value)
    assert "cxr calibrate --checkpoint" in str(err.value)
    with pytest.raises(ReadoutError, match="cannot be saved beside"):
        save_readout(_fit(model, checkpoint, sha=old_sha), checkpoint)


def test_foreign_or_newer_sidecars_are_refused(model, checkpoint):
    path = save_readout(_fit(model, checkpoint), checkpoint)
    raw = torch.load(path, weights_only=True)
    torch.save({**raw, "version": VERSION + 1}, path)
    with pytest.raises(ReadoutError, match=f"version {VERSION + 1}"):
        load_readout(checkpoint)
    torch.save({**raw, "format": "other"}, path)
    with pytest.raises(ReadoutError, match="not a cxr readout"):
        load_readout(checkpoint)
    path.write_bytes(b"not a torch file")
    with pytest.raises(ReadoutError, match="weights_only"):
        load_readout(checkpoint)


def test_run_dir_names_the_sidecar_of_best(tmp_path):
    run = RunDir(tmp_path)
    assert run.readout == readout_path(run.best)
    run.readout.write_bytes(b"x")
    run.clear()  # `cxr train --force`: a new best.pt, so the old readout goes too
    assert not run.readout.exists()


def test_predict_images_without_a_readout_says_so(model, checkpoint):
    from cxr.predict import predict_images

    pixels = np.random.default_rng(0).random((40, 36)).astype(np.float32)
    from cxr.data.images import LoadedImage
    [p] = predict_images(model, [LoadedImage(pixels, {})], passes=4)
    assert p.calibrated is None and p.calls is None and p.ood_score is None
    assert p.ood_flag is None and p.operating_point is None
    assert "no calibration / operating points / OOD guard available" in p.readout_note


def test_predict_images_with_a_readout(model, checkpoint):
    from cxr.data.images import LoadedImage
    from cxr.predict import model_input, predict_images

    readout = _fit(model, checkpoint)
    rng = np.random.default_rng(0)
    images = [LoadedImage(rng.random((40, 36)).astype(np.float32), {}) for _ in range(3)]
    preds = predict_images(model, images, passes=6, batch_size=2, readout=readout,
                           operating_point="specificity")
    x = torch.stack([model_input(model, im.pixels) for im in images])
    with torch.no_grad():  # features come from the MC pass itself, no second backbone pass
        pooled = model.pool_features(model.forward_features(x)).numpy()
    expected = readout.apply(np.stack([p.probs for p in preds]), pooled,
                             np.stack([p.samples for p in preds], axis=1))
    for i, p in enumerate(preds):
        np.testing.assert_allclose(p.features, pooled[i], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(p.calibrated, expected.calibrated[i])
        assert p.calls == list(expected.calls["specificity"][i]) and set(p.calls) <= set(CALLS)
        assert p.operating_point == "specificity" and p.readout_note is None
        assert p.ood_score == pytest.approx(expected.ood_score[i], rel=1e-5)
        assert p.ood_flag == (p.ood_score > readout.ood.threshold)
    with pytest.raises(ValueError, match="operating point 'f1'"):
        predict_images(model, images[:1], passes=2, readout=readout, operating_point="f1")
