"""cxr/evaluation/inference.py: the run's split joined to its dataset, MC-dropout predictions
over a table, and the pointing-game guard rails, on the tiny run of conftest.py (`tiny_run`)."""
import shutil

import numpy as np
import pytest

from cxr.checkpoint import load_model
from cxr.evaluation.inference import RunData, mc_predict_table, pointing_game_hook
from cxr.labels import FINDINGS

TEST_IMAGES = [f"{i:08d}_000.png" for i in range(48, 60)]  # patients 25-30


@pytest.fixture(scope="module")
def opened(tiny_run):
    run, data, y = tiny_run
    model, meta = load_model(run / "best.pt")
    return model, meta, RunData.open(run, meta), y


def test_rows_and_targets_of_the_runs_own_split(opened):
    _, _, data, y = opened
    test = data.rows("test")
    assert test["image"].tolist() == TEST_IMAGES and set(test["split"]) == {"test"}
    assert np.array_equal(data.targets(test), y[48:60])
    assert len(data.rows("val")) == 12 and data.missing == {"test": 0, "val": 0}
    prov = data.provenance()
    assert prov["strategy"] == "patient" and prov["split_seed"] == 3
    assert prov["data_version"].startswith("Data_Entry_2017.csv sha256:")


def test_missing_images_are_left_out_loudly(tiny_run, tmp_path, capsys):
    run, data, _ = tiny_run
    other = tmp_path / "data"
    shutil.copytree(data, other)
    (other / "images" / TEST_IMAGES[0]).unlink()
    _, meta = load_model(run / "best.pt")
    with pytest.warns(UserWarning, match="1 of 60 images"):
        opened = RunData.open(run, meta, str(other))
    assert opened.rows("test")["image"].tolist() == TEST_IMAGES[1:]
    assert opened.missing["test"] == 1 and TEST_IMAGES[0] in capsys.readouterr().out
    for name in TEST_IMAGES[1:]:
        (other / "images" / name).unlink()
    with pytest.warns(UserWarning, match="12 of 60 images"):
        emptied = RunData.open(run, meta, str(other))
    with pytest.raises(FileNotFoundError, match="none of the test images"):
        emptied.rows("test")


def test_a_checkpoint_without_data_dir_needs_data(tiny_run):
    run, _, _ = tiny_run
    _, meta = load_model(run / "best.pt")
    with pytest.raises(ValueError, match="pass --data DIR"):
        RunData.open(run, {**meta, "config": {}})


def test_split_without_sidecar_is_checked_against_the_checkpoint(tiny_run, tmp_path):
    run, _, _ = tiny_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("eval", "split.json"))
    _, meta = load_model(copy / "best.pt")
    assert RunData.open(copy, meta).rows("test")["image"].tolist() == TEST_IMAGES
    (copy / "split.csv").write_text((copy / "split.csv").read_text().replace(",test", ",val"))
    with pytest.raises(ValueError, match="not the split the checkpoint was trained with"):
        RunData.open(copy, meta)


def test_mc_predictions_are_seeded_per_film_and_flag_by_the_rule(opened):
    model, _, data, _ = opened
    rows = data.rows("test")
    mean, std, uncertain = mc_predict_table(model, rows, passes=4, batch_size=5, seed=2)
    assert mean.shape == std.shape == (12, len(FINDINGS)) and uncertain.shape == (12,)
    assert ((mean >= 0) & (mean <= 1)).all() and (std > 0).any()
    again = mc_predict_table(model, rows, passes=4, batch_size=5, seed=2)
    assert np.array_equal(mean, again[0]) and np.array_equal(std, again[1])
    assert not np.array_equal(std, mc_predict_table(model, rows, passes=4, batch_size=5,
                                                    seed=3)[1])
    # a film's noise is its own: other batches (other backbone rounding, 1e-7) give its numbers
    other = mc_predict_table(model, rows, passes=4, batch_size=3, seed=2)
    np.testing.assert_allclose(other[1], std, atol=1e-6)
    tail = mc_predict_table(model, rows.iloc[7:].reset_index(drop=True), passes=4, batch_size=5,
                            seed=2)
    np.testing.assert_allclose(tail[1], std[7:], atol=1e-6)
    assert np.array_equal(uncertain, std.mean(axis=1) > 0.1)  # the report's rule by default
    low = mc_predict_table(model, rows, passes=4, batch_size=5, seed=2, std_threshold=0.0)[2]
    assert np.array_equal(low, std.mean(axis=1) > 0)
    by_any = mc_predict_table(model, rows, passes=4, batch_size=5, seed=2, std_threshold=0.02,
                              rule="any")[2]
    assert np.array_equal(by_any, (std > 0.02).any(axis=1))


def test_predictions_use_the_models_own_preprocessing(opened):
    """The loader resizes to the checkpoint's input size: a batch is (B, 3, 32, 32)."""
    model, _, data, _ = opened
    seen, features = [], model.forward_features
    model.forward_features = lambda x: (seen.append(tuple(x.shape)), features(x))[1]
    try:
        mc_predict_table(model, data.rows("val").head(3), passes=2, batch_size=3)
    finally:
        del model.forward_features  # the class's method again
    assert seen and all(s[1:] == (3, 32, 32) for s in seen)
    with pytest.raises(ValueError, match="no images to predict"):
        mc_predict_table(model, data.rows("val").head(0), passes=2)


def test_pointing_game_is_skipped_without_boxes(opened, tiny_run, tmp_path):
    model, meta, data, _ = opened
    assert "no BBox_List_2017.csv" in pointing_game_hook(model, data.rows("test"), data)["skipped"]
    run, source, _ = tiny_run
    other = tmp_path / "data"
    shutil.copytree(source, other)
    (other / "BBox_List_2017.csv").write_text(  # a box on a training image only
        "Image Index,Finding Label,Bbox [x,y,w,h],,,\n00000001_000.png,Mass,1,2,3,4\n")
    boxed = RunData.open(run, meta, str(other))
    assert "none of the scored images" in pointing_game_hook(
        model, boxed.rows("test"), boxed)["skipped"]
