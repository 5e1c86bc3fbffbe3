"""cxr/dashboard/runs.py: run folders found and read while another process writes them."""
from __future__ import annotations

import json
import os
import time

from cxr.dashboard import jobs, runs
from cxr.rundir import RunDir, read_json


def write_progress(run_dir, **fields):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "progress.json").write_text(json.dumps(fields))


def test_finds_runs_at_any_depth_and_skips_eval_folders(tmp_path):
    write_progress(tmp_path / "a", status="finished")
    write_progress(tmp_path / "group" / "b", status="running", pid=os.getpid())
    (tmp_path / "a" / "eval").mkdir()
    (tmp_path / "a" / "eval" / "progress.json").write_text("{}")  # inside a run: not a run
    (tmp_path / "compare").mkdir()  # no marker: not a run
    found = sorted(p.relative_to(tmp_path).as_posix() for p in runs.find_runs(tmp_path))
    assert found == ["a", "group/b"]


def test_run_info_reads_progress_history_and_best(tmp_path):
    run = tmp_path / "r"
    write_progress(run, status="running", model="fusion", phase="finetune", epoch=3, epochs=10,
                   global_step=30, total_steps=120, eta_s=95.0, pid=os.getpid())
    (run / "history.csv").write_text("phase,epoch,train_loss,val_loss,val_macro_auc\n"
                                     "head,1,0.5,0.4,0.61\nhead,2,0.4,0.35,0.66\nfinetune,3,0.3,0.")
    info = runs.run_info(run, tmp_path)
    assert (info.name, info.model, info.phase, info.epoch, info.epochs) == \
        ("r", "fusion", "finetune", 3, 10)
    assert info.fraction == 30 / 120 and info.eta_s == 95.0
    assert info.best_val_auc == 0.66  # the half-written last row does not count


def test_running_trainer_launched_elsewhere_is_running_while_its_process_lives(tmp_path):
    import subprocess
    import sys
    # a process whose command line mentions cxr, like `python -m cxr train`
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "cxr"])
    try:
        run = tmp_path / "r"
        write_progress(run, status="running", pid=proc.pid)
        old = time.time() - 3600  # even with a stale heartbeat
        os.utime(run / "progress.json", (old, old))
        assert runs.run_info(run).status == "running"
    finally:
        proc.kill()
        proc.wait()
    assert runs.run_info(run).status == "died"


def test_running_without_a_live_process_or_heartbeat_is_died(tmp_path):
    run = tmp_path / "r"
    write_progress(run, status="running", pid=2 ** 22 + 12345)  # no such process
    old = time.time() - 3600
    os.utime(run / "progress.json", (old, old))
    assert runs.run_info(run).status == "died"


def test_job_that_exited_before_writing_progress_is_failed_with_its_log(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    job = RunDir(run).job
    job("train", "pid").write_text(json.dumps({"pid": 2 ** 22 + 12345}))
    job("train", "log").write_text("$ cxr train ...\n"
                                   "cxr train: error: dataset folder x does not exist\n")
    job("train", "exit").write_text("1\n")
    info = runs.run_info(run)
    assert info.status == "failed"
    assert "exit status 1" in info.error and "does not exist" in info.error


def test_trainer_status_wins_and_table_lists_runs(tmp_path):
    write_progress(tmp_path / "f", status="failed", error="CUDA out of memory")
    write_progress(tmp_path / "s", status="stopped")
    table = runs.runs_table(runs.list_runs(tmp_path))
    assert dict(zip(table["run"], table["status"])) == {"f": "failed", "s": "stopped"}
    assert table.loc[table["run"] == "f", "error"].item() == "CUDA out of memory"


def test_best_run_prefers_the_model_then_val_auc(tmp_path):
    def info(name, model, auc):
        return runs.RunInfo(path=tmp_path / name, name=name, model=model, best_val_auc=auc,
                            has_best=True)
    candidates = [info("a", "simple_cnn", 0.9), info("b", "fusion", 0.7), info("c", "fusion", 0.8)]
    assert runs.best_run(candidates, "fusion").name == "c"
    assert runs.best_run(candidates, "densenet121").name == "a"  # none of that model: best any
    assert runs.best_run([], "fusion") is None


def test_half_written_progress_reads_as_empty(tmp_path):
    (tmp_path / "progress.json").write_text('{"status": "runn')
    assert read_json(tmp_path / "progress.json") == {}


def test_format_eta():
    assert runs.format_eta(None) == "unknown"
    assert runs.format_eta(42) == "42s"
    assert runs.format_eta(125) == "2m 05s"
    assert runs.format_eta(3 * 3600 + 60) == "3h 01m"


def test_a_live_dashboard_job_is_starting_before_progress_exists(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    RunDir(run).job("train", "pid").write_text("")  # just claimed
    assert runs.run_info(run).status == "starting"
    assert jobs.job_state(run, "train") == "running"


def test_active_runs_can_stop_and_ended_ones_with_last_pt_can_resume(tmp_path):
    def info(name, status, last=False):
        (tmp_path / name).mkdir()
        if last:
            RunDir(tmp_path / name).last.write_bytes(b"")
        return runs.RunInfo(path=tmp_path / name, name=name, status=status)
    starting, running = info("s", "starting"), info("r", "running", last=True)
    assert starting.active and running.active and not running.resumable
    for status in ("stopped", "died", "failed"):
        assert info(status, status, last=True).resumable
        assert not info(status + "-early", status).resumable  # nothing to resume from
    finished = info("f", "finished", last=True)
    assert not finished.active and not finished.resumable
    assert runs.run_to_watch([finished, running, starting]) is running
    assert runs.run_to_watch([finished]) is finished and runs.run_to_watch([]) is None
