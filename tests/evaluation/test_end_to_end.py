"""`cxr synth` data -> two tiny `cxr train` runs -> `cxr evaluate` (with the pointing game) ->
`cxr compare`: the real modules end to end, at 32 px and a few steps (skill is not the point)."""
import hashlib
import json

import pandas as pd
import pytest

from cxr.cli import main


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    from cxr.synth.generate import generate_dataset
    from cxr.train import TrainConfig, train

    root = tmp_path_factory.mktemp("e2e")
    data = root / "data"
    generate_dataset(data, patients=40, size=48, seed=0, workers=1)
    base = dict(data_dir=str(data), model="simple_cnn", pretrained=False, image_size=32,
                batch_size=8, epochs=1, max_steps_per_epoch=2, workers=0, device="cpu",
                split_fractions=[0.5, 0.3, 0.2])
    runs = []
    for name, seed in (("a", 0), ("b", 1)):
        assert train(TrainConfig(**base, seed=seed), root / name) == 0
        assert main(["evaluate", "--checkpoint", str(root / name / "best.pt"), "--passes", "5",
                     "--bootstrap", "100", "--pointing-game"]) == 0
        runs.append(root / name)
    return runs


def test_evaluate_reports_provenance(two_runs):
    run = two_runs[0]
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    split = pd.read_csv(run / "split.csv")
    sidecar = json.loads((run / "split.json").read_text())
    preds = pd.read_csv(run / "eval" / "predictions.csv")
    assert sorted(preds["Image Index"]) == sorted(split.loc[split["split"] == "test", "image"])
    assert metrics["n_images"] == len(preds) and metrics["images_missing"]["test"] == 0
    digest = hashlib.sha256((run / "best.pt").read_bytes()).hexdigest()
    assert metrics["checkpoint_sha256"] == digest
    assert metrics["split_content_hash"] == sidecar["content_hash"]
    assert metrics["data_version"] == sidecar["data_version"]
    game = metrics["pointing_game"]
    assert game and all(0 <= v["hit_rate"] <= 1 and v["n"] > 0 for v in game.values())


def test_compare_two_runs_and_refuse_other_split(two_runs, tmp_path, capsys):
    a, b = two_runs
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "cmp"),
                 "--bootstrap", "100"]) == 0
    table = pd.read_csv(tmp_path / "cmp" / "table.csv")
    assert list(table.columns) == ["finding", "simple_cnn (a)", "simple_cnn (b)", "best"]
    paired = pd.read_csv(tmp_path / "cmp" / "paired.csv")
    assert len(paired) == 1 and paired.p_value.between(0, 1).all()
    assert main(["evaluate", "--checkpoint", str(a / "best.pt"), "--split", "val", "--passes", "5",
                 "--bootstrap", "0", "--out", str(a / "eval_val")]) == 0
    capsys.readouterr()
    assert main(["compare", str(a / "eval_val"), str(b), "--out", str(tmp_path / "x")]) == 1
    assert "evaluated on different images" in capsys.readouterr().err
