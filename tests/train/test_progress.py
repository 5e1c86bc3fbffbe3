import json

import pandas as pd

from cxr.train.data import EpochSampler
from cxr.train.progress import HISTORY_COLUMNS, History, Progress


def test_history_appends_rows_and_truncates_after_an_epoch(tmp_path):
    history = History(tmp_path)
    for epoch in (1, 2, 3):
        history.append({"phase": "full", "epoch": epoch, "val_macro_auc": 0.5 + epoch / 10})
    frame = pd.read_csv(tmp_path / "history.csv")
    assert list(frame.columns) == HISTORY_COLUMNS and list(frame["epoch"]) == [1, 2, 3]
    history.truncate_after(1)  # a resume from the epoch-1 checkpoint
    assert list(pd.read_csv(tmp_path / "history.csv")["epoch"]) == [1]
    History(tmp_path, enabled=False).append({"epoch": 9})  # other ranks write nothing
    assert len(pd.read_csv(tmp_path / "history.csv")) == 1


def test_progress_is_valid_json_with_nan_as_null_and_throttled(tmp_path):
    progress = Progress(tmp_path, interval=3600, model="simple_cnn")
    progress.update(force=True, status="running", best_val_auc=float("nan"), step=1)
    progress.update(step=2)  # within the interval: not written
    state = json.loads((tmp_path / "progress.json").read_text())
    assert state["best_val_auc"] is None and state["step"] == 1 and state["model"] == "simple_cnn"
    progress.update(force=True, status="finished")
    assert json.loads((tmp_path / "progress.json").read_text())["step"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["progress.json"]


def test_epoch_sampler_partitions_skips_and_caps():
    full = [list(EpochSampler(20, 4, seed=0, rank=0, world=1))]
    one = [i for _, i in full[0]]
    assert sorted(one) == list(range(20))
    ranks = []
    for rank in (0, 1):
        s = EpochSampler(20, 2, seed=0, rank=rank, world=2)
        ranks.append([i for _, i in s])
    # the two ranks' k-th batches together are the 1-process k-th batch
    for k in range(5):
        both = ranks[0][2 * k:2 * k + 2] + ranks[1][2 * k:2 * k + 2]
        assert sorted(both) == sorted(one[4 * k:4 * k + 4])
    s = EpochSampler(20, 4, seed=0, rank=0, world=1, max_batches=3)
    s.set_epoch(0, skip_batches=1)
    assert [i for _, i in s] == one[4:12] and s.batches() == 3
    s.set_epoch(1)
    assert [e for e, _ in s] == [1] * 12 and [i for _, i in s] != one[:12]  # reshuffled
