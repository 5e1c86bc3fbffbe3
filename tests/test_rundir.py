"""cxr/rundir.py: a run directory's files, and reading them while another process writes them."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from cxr.rundir import RUN_FILES, EvalDir, RunDir, RunNameError, check_run_name, read_json


def test_used_lists_the_run_files_present_and_taken_adds_a_claimed_train_job(tmp_path):
    run = RunDir(tmp_path)
    assert run.used() == [] and run.taken() == []
    run.stop.touch()                                  # a stop request is not a run
    run.job("evaluate", "log").write_text("")         # nor another kind of job
    assert run.taken() == []
    run.job("train", "pid").write_text("")            # the dashboard claimed it: taken, unused
    assert run.used() == [] and run.taken() == ["job-train.pid"]
    run.config.write_text("model: fusion\n")
    run.last.write_bytes(b"")
    assert run.used() == [run.config.name, run.last.name]
    assert run.taken() == [run.config.name, run.last.name, "job-train.pid"]


def test_clear_deletes_the_run_its_stop_request_and_eval_but_keeps_job_files(tmp_path):
    run = RunDir(tmp_path)
    for name in RUN_FILES:
        (tmp_path / name).write_text("x")
    run.stop.touch()
    run.eval.path.mkdir()
    run.eval.metrics.write_text("{}")
    run.job("train", "log").write_text("$ cxr train\n")
    (tmp_path / "notes.txt").write_text("mine")
    run.clear()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job-train.log", "notes.txt"]
    run.clear()  # nothing left to delete is fine


def test_progress_and_status_read_absent_half_written_and_odd_files_as_nothing(tmp_path):
    run = RunDir(tmp_path)
    assert run.read_progress() == {} and run.status() is None
    run.progress.write_text('{"status": "runn')       # the trainer is rewriting it
    assert run.read_progress() == {} and run.status() is None
    run.progress.write_text('["not", "an", "object"]')
    assert read_json(run.progress) == {}
    run.progress.write_text('{"status": "stopped", "step": 3}')
    assert run.read_progress() == {"status": "stopped", "step": 3}
    assert run.status() == "stopped"


def test_history_survives_a_half_written_row_and_config_tolerates_bad_yaml(tmp_path):
    run = RunDir(tmp_path)
    assert run.read_history().empty and run.read_config() == {}
    run.history.write_text("epoch,val_macro_auc\n1,0.6\n2,0.7,0.1,9\n3")  # garbled, cut short
    history = run.read_history()
    assert history["epoch"].tolist() == [1, 3] and np.isnan(history["val_macro_auc"].iloc[1])
    run.config.write_text("model: [fusion\n")
    assert run.read_config() == {}
    run.config.write_text("model: fusion\nepochs: 3\n")
    assert run.read_config() == {"model": "fusion", "epochs": 3}


def test_an_eval_folder_is_what_scoring_writes_and_a_run_holds_one(tmp_path):
    from cxr.evaluation.scoring import score, write_outputs
    from cxr.labels import FINDINGS

    rng = np.random.default_rng(0)
    y = np.tile(np.eye(2, dtype=np.uint8), (4, 7))    # every finding has both classes
    prob = rng.uniform(size=y.shape)
    metrics = score(y, prob, np.arange(len(y)), n_bootstrap=0)
    frame = pd.DataFrame({"Image Index": [f"i{k}.png" for k in range(len(y))]})
    run = RunDir(tmp_path / "run")
    out = write_outputs(run.eval.path, metrics, y, prob, frame)
    written = EvalDir(out)
    assert written == run.eval
    assert sorted(p.name for p in out.iterdir()) == sorted(
        p.name for p in (written.predictions, written.metrics, written.roc, written.calibration))
    assert read_json(written.metrics)["n_images"] == len(y)
    assert set(pd.read_csv(written.roc)["finding"]) == set(FINDINGS)


@pytest.mark.parametrize("name", ["fusion-224", "demo-fusion", "simple_cnn-20261208-030000",
                                  "r1", "a.b+c_d-e", "x" * 100])
def test_a_plain_folder_name_is_a_run_name(name):
    assert check_run_name(name) == name


@pytest.mark.parametrize("name, message", [
    ("../outside", "is a path: give one folder name"),
    ("/etc/cron.d", "is a path"), ("runs/inner", "is a path"), ("a\\b", "is a path"),
    ("..", "starts with '.'"), (".", "starts with '.'"), (".hidden", "starts with '.'"),
    ("", "empty"), ("x" * 101, "longer than 100 characters"),
    ("with space", "not ' '"), ("tab\there", "not '\\t'"), ("nul\0", "not '\\x00'"),
    ("C:", "not ':'"), ("é", "not 'é'"), ("-rf", "not '-' first"), ("~root", "not '~'"),
])
def test_anything_else_is_refused_saying_why(name, message):
    with pytest.raises(RunNameError, match=re.escape(message)):
        check_run_name(name)
