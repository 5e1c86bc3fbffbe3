"""A new user's path: the README's run command in a fresh copy of the repository, with a tiny demo
(few images, 1 epoch), until the dashboard answers and the whole pipeline has filled the
checkpoints, evaluations and worklist; then Ctrl-C (SIGINT) must stop it cleanly."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MODELS = ("fusion", "simple_cnn", "densenet121", "efficientnet_b0")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def copy_repo(dest: Path) -> None:
    """The tracked and untracked-but-not-ignored files, as a clone would have them, plus a link
    to the installed .venv so the copy's setup step has nothing to install."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                           check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    (dest / ".venv").symlink_to(REPO / ".venv")


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        assert proc.poll() is None, (f"run.sh exited early ({proc.returncode}) while waiting for "
                                     f"{what}")
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def app_answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def demo_stage(root: Path) -> str:
    try:
        return json.loads((root / "checkpoints" / "demo_status.json").read_text())["stage"]
    except (OSError, ValueError, KeyError):
        return ""


@pytest.mark.skipif(not (REPO / ".venv" / "bin" / "python").exists(),
                    reason="needs ./test.sh's .venv")
def test_demo_models_are_registry_models_and_bad_names_are_refused():
    from cxr.demo import DEMO_MODELS, demo_models
    from cxr.models import MODELS as REGISTRY
    assert tuple(DEMO_MODELS) == MODELS and set(DEMO_MODELS) <= set(REGISTRY)
    assert demo_models(" fusion,simple_cnn ") == ["fusion", "simple_cnn"]
    with pytest.raises(ValueError, match="unknown model.s. resnet50; available: simple_cnn"):
        demo_models("fusion,resnet50")
    with pytest.raises(ValueError, match="no model given"):
        demo_models(" , ")


def test_run_command_from_a_fresh_copy(tmp_path):
    root = tmp_path / "clone"
    copy_repo(root)
    port = free_port()
    log = open(tmp_path / "run.log", "w")
    proc = subprocess.Popen(
        ["./run.sh", "--patients", "16", "--size", "64", "--passes", "3", "--bootstrap", "20",
         "--port", str(port), "--set", "epochs=1", "--set", "image_size=64",
         "--set", "batch_size=8", "--set", "workers=0"],
        cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        # the copy's own cxr, as a clone's .venv (an editable install of it) would import; the
        # linked .venv may be an editable install of another checkout
        env=dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(root)))
    try:
        wait_for(lambda: app_answers(port), 120, "the dashboard on its port", proc)
        stage = wait_for(lambda: demo_stage(root).startswith("finished") and demo_stage(root),
                         900, "the demo pipeline to finish", proc)
        assert stage == "finished", (stage, (tmp_path / "run.log").read_text()[-3000:])
        assert (root / "data" / "demo" / "Data_Entry_2017.csv").is_file()
        assert (root / "data" / "demo" / "cache" / "images_64.json").is_file()  # at image_size
        for model in MODELS:
            run = root / "checkpoints" / f"demo-{model}"
            assert (run / "best.pt").is_file(), model
            metrics = json.loads((run / "eval" / "metrics.json").read_text())
            assert 0.0 <= metrics["macro_auc"] <= 1.0
        assert (root / "checkpoints" / "demo-compare" / "table.md").is_file()
        # where the time went: every step, in order, with non-negative durations
        timeline = json.loads((root / "checkpoints" / "demo_status.json").read_text())["timeline"]
        expected = ["data generation", "caching"]
        for model in MODELS:
            expected += [f"{step} {model}" for step in ("train", "calibrate", "evaluate",
                                                        "worklist")]
            if model == "fusion":
                expected.append("simulated reviews")
        assert [e["stage"] for e in timeline] == expected + ["compare"], timeline
        for before, e in zip([None, *timeline], timeline):
            assert e["ok"] and e["end"] >= e["start"] and e["seconds"] >= 0, e
            assert e["seconds"] == round(e["end"] - e["start"], 3)
            assert before is None or e["start"] >= before["end"], (before, e)
        with sqlite3.connect(root / "data" / "worklist.sqlite") as db:
            assert db.execute("select count(*) from cases").fetchone()[0] > 0
            # calibrated before evaluation: every case has its calls and OOD flag
            assert db.execute("select count(*) from cases where operating_point is null "
                              "or ood is null").fetchone()[0] == 0
            # a few simulated decisions on the fusion queue, for the Audit page
            made = db.execute("select d.reviewer, d.simulated, c.model from decisions d "
                              "join cases c on c.id = d.case_id").fetchall()
            assert made and set(made) == {("simulated reviewer (demo)", 1, "fusion")}
        assert app_answers(port), "the dashboard stopped answering after the pipeline"

        proc.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal sends
        assert proc.wait(timeout=60) == 0
        assert not app_answers(port), "the dashboard still answers after Ctrl-C"
        assert demo_stage(root) == "finished"  # Ctrl-C after the pipeline stops only the app

        # Again: everything exists, so nothing is retrained or re-evaluated.
        before = {m: (root / "checkpoints" / f"demo-{m}" / "best.pt").stat().st_mtime_ns
                  for m in MODELS}
        again = subprocess.run(["./run.sh", "--no-app", "--passes", "3", "--bootstrap", "20"],
                               cwd=root, capture_output=True, text=True, timeout=300,
                               env=dict(os.environ, PYTHONPATH=str(root)))
        assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
        assert "training" not in again.stdout and "evaluating" not in again.stdout, again.stdout
        after = {m: (root / "checkpoints" / f"demo-{m}" / "best.pt").stat().st_mtime_ns
                 for m in MODELS}
        assert after == before
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def test_ctrl_c_while_a_model_trains_stops_the_trainer_too(tmp_path):
    """Ctrl-C mid-training: the trainer (a child in its own session, which the terminal's
    SIGINT does not reach) is asked to stop, saves last.pt, ends `stopped`, and is gone."""
    runs = tmp_path / "runs"
    cmd = [str(REPO / ".venv" / "bin" / "python"), "-m", "cxr", "demo", "--no-app",
           "--data", str(tmp_path / "demo"), "--runs", str(runs),
           "--worklist", str(tmp_path / "wl.sqlite"), "--models", "simple_cnn",
           "--patients", "16", "--size", "64"]
    cmd += [x for kv in ("epochs=500", "patience=500", "image_size=64", "batch_size=8",
                         "workers=0", "max_steps_per_epoch=2") for x in ("--set", kv)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True,
                            env=dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1"))
    progress = runs / "demo-simple_cnn" / "progress.json"

    def training() -> bool:
        try:
            state = json.loads(progress.read_text())
        except (OSError, ValueError):
            return False
        return state.get("status") == "running" and state.get("global_step", 0) > 0
    try:
        wait_for(training, 300, "the demo's trainer to take a step", proc)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=150)
        assert proc.returncode == 0, out[-2000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    state = json.loads(progress.read_text())
    assert state["status"] == "stopped", state
    assert (runs / "demo-simple_cnn" / "last.pt").is_file()
    with pytest.raises(ProcessLookupError):
        os.kill(state["pid"], 0)  # the trainer exited with the demo, it was not orphaned
    assert "stopped" in json.loads((runs / "demo_status.json").read_text())["stage"]


def test_each_setting_has_one_source(tmp_path, monkeypatch):
    """Fusion trains for the yaml's max_minutes and the baselines for DEMO_BUDGET_MINUTES;
    evaluation uses each run's own mc_passes unless --passes is given."""
    import argparse
    from cxr import demo
    from cxr.train.config import load_config

    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    calls = []
    monkeypatch.setattr(demo.Demo, "call", lambda self, *args: calls.append(args) or 0)
    monkeypatch.setattr(demo.RunDir, "status", lambda run: "finished" if calls else None)

    def commands(argv, step, model):
        calls.clear()
        step(demo.Demo(parser.parse_args(["--runs", str(tmp_path), *argv])), model)
        return [str(a) for a in calls[0]]

    yaml_budget = load_config(REPO / "configs" / "demo.yaml").max_minutes
    assert "fusion" not in demo.DEMO_BUDGET_MINUTES and yaml_budget is not None
    assert not any(a.startswith("max_minutes=") for a in commands([], demo.Demo.train, "fusion"))
    budget = f"max_minutes={demo.DEMO_BUDGET_MINUTES['simple_cnn']}"
    assert budget in commands([], demo.Demo.train, "simple_cnn")
    user = commands(["--set", "max_minutes=1"], demo.Demo.train, "simple_cnn")
    assert user.index("max_minutes=1") > user.index(budget)  # the user's comes later and wins
    assert "--passes" not in commands([], demo.Demo.evaluate, "fusion")
    given = commands(["--passes", "3"], demo.Demo.evaluate, "fusion")
    assert given[given.index("--passes") + 1] == "3"


def test_each_run_is_calibrated_before_it_is_evaluated_and_only_once(tmp_path, monkeypatch):
    """`cxr calibrate` writes best.pt's readout before `cxr evaluate` reports it; a run that
    has one is not calibrated again, and an evaluation older than its readout is redone."""
    import argparse
    from cxr import demo

    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    calls = []
    monkeypatch.setattr(demo.Demo, "call", lambda self, *args: calls.append(args) or 0)
    monkeypatch.setattr(demo.Demo, "ensure_data", lambda self: None)
    monkeypatch.setattr(demo.Demo, "ensure_cache", lambda self: None)
    monkeypatch.setattr(demo.RunDir, "status", lambda run: "finished")
    d = demo.Demo(parser.parse_args(["--runs", str(tmp_path), "--models", "simple_cnn",
                                     "--passes", "3"]))
    run = d.run_dir("simple_cnn")

    def steps() -> list[str]:
        calls.clear()
        d.pipeline()
        return [str(a[0]) for a in calls]

    assert steps() == ["calibrate", "evaluate", "worklist"]
    assert [str(a) for a in calls[0]] == ["calibrate", "--checkpoint", str(run.best),
                                          "--passes", "3"]
    run.eval.path.mkdir(parents=True)
    run.readout.write_bytes(b"x")
    run.eval.metrics.write_text("{}")
    os.utime(run.readout, (1_000_000, 1_000_000))  # calibrated, then evaluated
    assert steps() == ["worklist"]
    os.utime(run.readout, None)  # calibrated again after the evaluation
    os.utime(run.eval.metrics, (1_000_000, 1_000_000))
    assert steps() == ["evaluate", "worklist"]
