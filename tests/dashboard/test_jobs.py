"""cxr/dashboard/jobs.py: detached `cxr` jobs, one per run dir, exit status recorded."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from cxr.dashboard import jobs
from cxr.rundir import RunDir


def wait_exit(run_dir: Path, kind: str, timeout: float = 120) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if jobs.job_state(run_dir, kind) == "exited" and jobs.exit_code(run_dir, kind) is not None:
            return jobs.exit_code(run_dir, kind)
        time.sleep(0.2)
    raise AssertionError(f"{kind} job in {run_dir} still running after {timeout}s")


# A `cxr` command that fails fast (no torch import) with a clear message.
def failing(tmp_path) -> list[str]:
    return ["worklist", "export", "--db", str(tmp_path / "absent.sqlite"), "--out", "x.csv"]


def succeeding(tmp_path) -> list[str]:
    from cxr.worklist import Worklist
    Worklist(tmp_path / "w.sqlite")
    return ["worklist", "export", "--db", str(tmp_path / "w.sqlite"),
            "--out", str(tmp_path / "out.csv")]


def test_launch_records_pid_log_and_exit_status(tmp_path):
    run = tmp_path / "run"
    pid = jobs.launch("evaluate", failing(tmp_path), run)
    record = json.loads(RunDir(run).job("evaluate", "pid").read_text())
    assert record["pid"] == pid and record["argv"][:2] == ["worklist", "export"]
    assert wait_exit(run, "evaluate") == 1
    log = jobs.log_tail(run, "evaluate")
    assert log.startswith("$ cxr worklist export")
    assert "absent.sqlite does not exist" in log  # cxr's own error message reached the log


def test_successful_job_exits_zero(tmp_path):
    run = tmp_path / "run"
    jobs.launch("evaluate", succeeding(tmp_path), run)
    assert wait_exit(run, "evaluate") == 0
    assert (tmp_path / "out.csv").is_file()


def test_second_launch_while_running_is_refused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    # Pretend a job is starting: the pid file exists but has no pid yet (fresh mtime).
    RunDir(run).job("evaluate", "pid").write_text("")
    with pytest.raises(jobs.JobError, match="already running"):
        jobs.launch("evaluate", failing(tmp_path), run)


def test_finished_evaluate_job_can_be_relaunched(tmp_path):
    run = tmp_path / "run"
    jobs.launch("evaluate", failing(tmp_path), run)
    assert wait_exit(run, "evaluate") == 1
    jobs.launch("evaluate", succeeding(tmp_path), run)  # not refused: the first one ended
    assert wait_exit(run, "evaluate") == 0


@pytest.mark.parametrize("existing", ["progress.json", "config.yaml", "best.pt", "train.log",
                                      "job-train.pid"])
def test_training_into_a_taken_run_dir_is_refused(tmp_path, existing):
    run = tmp_path / "run"
    run.mkdir()
    (run / existing).write_text("{}")
    with pytest.raises(jobs.JobError, match="taken"):
        jobs.launch("train", ["train", "--out", str(run)], run)
    assert (run / existing).read_text() == "{}"  # nothing overwritten
    assert not RunDir(run).job("train", "log").exists()


def test_concurrent_claims_start_one_job(tmp_path):
    """The O_EXCL pid file is the lock: of two claims on one run dir only one wins."""
    run = tmp_path / "run"
    run.mkdir()
    fd = jobs._claim(run, "train", new_run=True)
    try:
        with pytest.raises(jobs.JobError):
            jobs._claim(run, "train", new_run=True)
        with pytest.raises(jobs.JobError):  # a resume is refused too while one is starting
            jobs._claim(run, "train", new_run=False)
    finally:
        import os
        os.close(fd)


def test_pid_alive_rejects_dead_and_foreign_processes(tmp_path):
    import os
    import subprocess
    import sys
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        # Popen returns once exec began; the kernel fills /proc/PID/cmdline a moment later
        # (seen empty under load), so wait for that condition, not for a fixed time.
        cmdline, deadline = Path(f"/proc/{proc.pid}/cmdline"), time.monotonic() + 30
        while cmdline.exists() and not cmdline.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not jobs.pid_alive(proc.pid)  # alive, but not our job wrapper
        assert jobs.pid_alive(proc.pid, needle=b"time.sleep")
    finally:
        proc.kill()
        proc.wait()
    assert not jobs.pid_alive(proc.pid, needle=b"time.sleep")
    assert not jobs.pid_alive(os.getpid(), needle=b"no such command line")


def test_stop_request_writes_the_stop_file(tmp_path):
    assert not jobs.stop_requested(tmp_path)
    path = jobs.request_stop(tmp_path)
    assert path == RunDir(tmp_path).stop and jobs.stop_requested(tmp_path)


def test_evaluate_args(tmp_path):
    assert jobs.evaluate_args(tmp_path) == ["evaluate", "--checkpoint", str(tmp_path / "best.pt")]


def test_train_args_and_checks(tmp_path):
    args = jobs.train_args("data/demo", "fusion", tmp_path / "r",
                           {"image_size": 64, "pretrained": False, "weights": None, "loss": ""})
    assert args == ["train", "--data", "data/demo", "--model", "fusion", "--out",
                    str(tmp_path / "r"), "--set", "image_size=64", "--set", "pretrained=false"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        jobs.check_train_args(tmp_path / "nope", "fusion", {})


def test_launch_train_names_the_run_and_passes_the_extra_settings(tmp_path, monkeypatch):
    launched, checked = [], []
    monkeypatch.setattr(jobs, "check_train_args", lambda *a: checked.append(a))
    monkeypatch.setattr(jobs, "launch", lambda kind, args, run_dir: launched.append(
        (kind, args, run_dir)) or 4321)
    name, pid = jobs.launch_train(tmp_path, " data/demo ", "fusion", "  ", {"epochs": 2},
                                  "lr_head=3e-4\n\n  patience=3 \n")
    assert pid == 4321 and re.fullmatch(r"fusion-\d{8}-\d{6}", name)
    kind, args, run_dir = launched[0]
    assert kind == "train" and run_dir == tmp_path / name
    assert args == ["train", "--data", "data/demo", "--model", "fusion", "--out",
                    str(tmp_path / name), "--set", "epochs=2", "--set", "lr_head=3e-4",
                    "--set", "patience=3"]
    assert checked == [("data/demo", "fusion", {"epochs": 2}, ["lr_head=3e-4", "patience=3"])]
    assert jobs.launch_train(tmp_path, "d", "fusion", " mine ", {})[0] == "mine"


def test_launch_train_checks_before_it_starts_anything(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        jobs.launch_train(tmp_path / "runs", str(tmp_path / "nope"), "fusion", "r", {})
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name", ["../escaped", "/tmp/abs-run", "sub/run", "..", ".hidden"])
def test_launch_train_takes_one_plain_folder_name_only(tmp_path, name, monkeypatch):
    """A run written outside the runs folder could be neither listed nor stopped."""
    launched = []
    monkeypatch.setattr(jobs, "launch", lambda *a: launched.append(a) or 1)
    monkeypatch.setattr(jobs, "check_train_args", lambda *a: None)
    runs = tmp_path / "runs"
    runs.mkdir()
    with pytest.raises(ValueError, match="run name .*(is a path|starts with '.')"):
        jobs.launch_train(runs, "data", "fusion", name, {})
    assert not launched and list(tmp_path.iterdir()) == [runs] and not list(runs.iterdir())


def test_launch_train_refuses_a_name_taken_by_a_file(tmp_path):
    (tmp_path / "demo_status.json").write_text("{}")
    with pytest.raises(jobs.JobError, match="is a file, not a run folder"):
        jobs.launch_train(tmp_path, "data", "fusion", "demo_status.json", {})


def test_train_log_tail_prefers_the_jobs_log_then_the_trainers(tmp_path):
    run = RunDir(tmp_path)
    assert jobs.train_log_tail(tmp_path) == ""
    run.log.write_text("".join(f"line {i}\n" for i in range(30)))  # `cxr demo` or a terminal
    assert jobs.train_log_tail(tmp_path, 3) == "line 27\nline 28\nline 29"
    run.job("train", "log").write_text("$ cxr train ...\nepoch 1\n")
    assert jobs.train_log_tail(tmp_path) == "$ cxr train ...\nepoch 1"
