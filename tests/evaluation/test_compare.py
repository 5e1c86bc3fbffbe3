"""`cxr compare` on runs evaluated from predictions CSVs (external mode) with synthetic labels."""
import numpy as np
import pandas as pd
import pytest

from cxr.cli import main
from cxr.evaluation.predictions import predictions_frame
from cxr.labels import FINDINGS


@pytest.fixture
def evaluated(tmp_path, synthetic_labels, write_data_entry):
    """evaluate(name, strength, keep=slice(None)) -> RUN_DIR, its eval/ on synthetic labels."""
    images, patients, y = synthetic_labels
    labels = tmp_path / "Data_Entry_2017.csv"
    write_data_entry(labels, images, patients, y)

    def evaluate(name, strength, keep=slice(None)):
        rng = np.random.default_rng(sum(map(ord, name)))  # fixed per name, any process
        prob = np.clip(strength * y + (1 - strength) * rng.random(y.shape), 0, 1)
        std = 0.1 * rng.random(y.shape)
        run = tmp_path / name
        run.mkdir()
        predictions_frame(np.array(images)[keep], prob[keep], std[keep], None).to_csv(
            run / "preds.csv", index=False)
        assert main(["evaluate", "--predictions", str(run / "preds.csv"), "--labels", str(labels),
                     "--out", str(run / "eval"), "--bootstrap", "50"]) == 0
        return run
    return evaluate


def test_table_and_paired_differences(tmp_path, evaluated):
    strong, weak = evaluated("strong", 0.5), evaluated("weak", 0.05)
    out = tmp_path / "cmp"
    assert main(["compare", str(strong), str(weak / "eval"), "--out", str(out),
                 "--bootstrap", "200"]) == 0
    table = pd.read_csv(out / "table.csv")
    assert table["finding"].tolist() == [*FINDINGS, "Macro AUC"]
    assert list(table.columns) == ["finding", "strong", "weak", "best"]
    assert (table["best"] == "strong").all()
    md = (out / "table.md").read_text()
    macro_line = next(line for line in md.splitlines() if line.startswith("| **Macro AUC**"))
    assert f"**{table['strong'].iloc[-1]:.3f}**" in macro_line
    paired = pd.read_csv(out / "paired.csv")
    row = paired.iloc[0]
    assert (row.model_a, row.model_b) == ("strong", "weak")
    assert row.difference == pytest.approx(table["strong"].iloc[-1] - table["weak"].iloc[-1])
    assert 0 < row.ci_low < row.difference < row.ci_high and row.p_value < 0.05
    assert "strong | weak" in (out / "paired.md").read_text()


def test_refuses_runs_on_different_test_images(tmp_path, evaluated, capsys):
    full, part = evaluated("full", 0.3), evaluated("part", 0.3, keep=slice(0, 290))
    assert main(["compare", str(full), str(part), "--out", str(tmp_path / "cmp")]) == 1
    err = capsys.readouterr().err
    assert str(part / "eval") in err and "10 only in" in err and "00000290_000.png" in err
    assert not (tmp_path / "cmp" / "table.csv").exists()
