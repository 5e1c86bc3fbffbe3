"""pages/2_Train.py: launch a real (tiny) `cxr train` in the background, watch it, stop it; a
second launch into the same run dir is refused; past runs and a failed run's error are shown."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from apptest_util import button, no_exception

from cxr.dashboard import jobs
from cxr.dashboard.runs import run_info

PAGE = "pages/2_Train.py"


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "tiny"
    subprocess.run([sys.executable, "-m", "cxr", "synth", "--out", str(out), "--patients", "30",
                    "--size", "32", "--workers", "1"], check=True, capture_output=True)
    return out


def wait_status(run_dir, wanted: set[str], timeout: float = 240) -> str:
    deadline = time.time() + timeout
    status = None
    while time.time() < deadline:
        status = run_info(run_dir).status
        if status in wanted:
            return status
        time.sleep(0.5)
    log = jobs.log_tail(run_dir, "train", 30)
    raise AssertionError(f"run {run_dir} is {status!r}, not {wanted}, after {timeout}s:\n{log}")


@pytest.fixture
def reap(fresh_world):
    """Kill what a failing test left running (the jobs are our children's sessions)."""
    yield
    import os
    import signal
    for pid_file in fresh_world.runs.glob("*/job-*.pid"):
        job = jobs.read_job(pid_file.parent, pid_file.stem.removeprefix("job-"))
        if job and job.get("pid") and jobs.pid_alive(job["pid"]):
            os.killpg(job["pid"], signal.SIGKILL)


def fill_form(at, data, name, epochs=200):
    at.text_input(key="t_data").set_value(str(data))
    at.selectbox(key="t_model").set_value("simple_cnn")
    at.text_input(key="t_name").set_value(name)
    at.select_slider(key="t_size").set_value(32)
    at.number_input(key="t_epochs").set_value(epochs)
    at.number_input(key="t_batch").set_value(4)
    at.text_area(key="t_extra").set_value("workers=0\npatience=500")
    button(at, "Launch").click()
    return at.run()


def test_past_runs_table_and_monitor(app, world):
    at = app(world, PAGE)
    no_exception(at)
    table = at.dataframe[0].value
    assert table[["run", "model", "status"]].values.tolist() == [["tiny-fusion", "fusion",
                                                                  "finished"]]
    assert table["best val AUC"].tolist() == [pytest.approx(0.61)]
    assert any("Finished. Best val macro AUC: 0.6100" in s.value for s in at.success)
    assert len(at.get("plotly_chart")) == 2  # loss and AUC curves
    from cxr.models import MODELS  # the launch form offers the registry, fusion first chosen
    model = at.selectbox(key="t_model")
    assert model.options == list(MODELS) and model.value == "fusion"


def test_a_failed_runs_error_is_shown(app, fresh_world):
    bad = fresh_world.runs / "broken"
    bad.mkdir()
    (bad / "progress.json").write_text(json.dumps(
        {"status": "failed", "model": "fusion", "error": "RuntimeError: CUDA out of memory"}))
    at = app(fresh_world, PAGE)
    at.selectbox(key="watch").set_value("broken")
    at.run()
    no_exception(at)
    assert any("Run failed: RuntimeError: CUDA out of memory" in e.value for e in at.error)


@pytest.mark.parametrize("name", ["../escaped", "/tmp/cxr-abs-run", "a/b", ".."])
def test_a_run_name_that_is_a_path_is_refused_on_the_page(app, fresh_world, tiny_dataset,
                                                          name, monkeypatch):
    def never(kind, args, run_dir):  # were the name let through: fail here, start nothing
        raise AssertionError(f"launched into {run_dir}")
    monkeypatch.setattr(jobs, "launch", never)
    at = app(fresh_world, PAGE)
    at = fill_form(at, tiny_dataset, name)
    no_exception(at)
    errors = [e.value for e in at.error]
    # said twice: under the field as it is typed, and by Launch, which starts nothing
    assert len([e for e in errors if e.startswith(f"run name {name!r}")]) == 2, errors
    assert not any(s.value.startswith("Launched") for s in at.success)
    assert [p.name for p in fresh_world.runs.iterdir()] == [fresh_world.run_dir.name]
    assert not (fresh_world.root / "escaped").exists()
    assert not Path("/tmp/cxr-abs-run").exists()


def test_bad_settings_are_refused_before_launch(app, fresh_world, tiny_dataset):
    at = app(fresh_world, PAGE)
    at = fill_form(at, fresh_world.root / "no-such-dataset", "x")
    assert any("does not exist" in e.value for e in at.error)
    at.text_input(key="t_data").set_value(str(tiny_dataset))
    at.text_area(key="t_extra").set_value("no_such_key=1")
    button(at, "Launch").click()
    at.run()
    no_exception(at)
    assert any("unknown config key 'no_such_key'" in e.value for e in at.error)
    assert not (fresh_world.runs / "x").exists()


def test_launch_watch_and_stop_a_tiny_run(app, fresh_world, tiny_dataset, reap):
    at = app(fresh_world, PAGE)
    at = fill_form(at, tiny_dataset, "tiny-cnn")
    no_exception(at)
    assert any("Launched `tiny-cnn`" in s.value for s in at.success), [e.value for e in at.error]
    run_dir = fresh_world.runs / "tiny-cnn"
    assert jobs.read_job(run_dir, "train")["argv"][:7] == [
        "train", "--data", str(tiny_dataset), "--model", "simple_cnn", "--out", str(run_dir)]

    # a second launch into the same run dir is refused while it runs
    at = fill_form(at, tiny_dataset, "tiny-cnn")
    assert any("refused" in e.value and "tiny-cnn" in e.value for e in at.error)

    wait_status(run_dir, {"running"})
    # a new session (a reload, another browser) finds it running and can stop it
    at = app(fresh_world, PAGE)
    assert at.selectbox(key="watch").value == "tiny-cnn"
    no_exception(at)
    button(at, "Stop this run").click()
    at.run()
    no_exception(at)
    assert jobs.stop_requested(run_dir) or run_info(run_dir).status == "stopped"
    assert wait_status(run_dir, {"stopped", "finished", "failed"}, timeout=120) == "stopped"
    assert jobs.exit_code(run_dir, "train") == 0  # a stop is a clean exit
    at.run()
    assert any("Stopped on request" in w.value for w in at.warning)
    assert any(b.label == "Resume from last.pt" for b in at.button)


@pytest.fixture
def no_gpu(monkeypatch):
    """This machine as a laptop without CUDA, and no warm-up measured yet in this process."""
    import torch
    from cxr.dashboard import cost
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(cost, "_measured", {})


def small_run(at, data, name="small"):
    """A simple_cnn at 32 px on the tiny dataset (its warm-up takes a fraction of a second)."""
    at.text_input(key="t_data").set_value(str(data))
    at.text_input(key="t_name").set_value(name)
    at.selectbox(key="t_model").set_value("simple_cnn")
    at.select_slider(key="t_size").set_value(32)
    return at.run()


def test_without_a_gpu_the_cpu_demo_is_the_default_and_the_cost_shows(app, fresh_world,
                                                                       tiny_dataset, no_gpu):
    import yaml
    from cxr.dashboard import presets
    at = app(fresh_world, PAGE)
    no_exception(at)
    assert at.radio(key="t_preset").value == "CPU demo"
    demo = yaml.safe_load(presets.DEMO_CONFIG.read_text())  # the form holds demo.yaml
    assert (at.select_slider(key="t_size").value, at.number_input(key="t_epochs").value,
            at.number_input(key="t_batch").value, at.number_input(key="t_steps").value,
            at.number_input(key="t_minutes").value, at.checkbox(key="t_pretrained").value) == (
        demo["image_size"], demo["epochs"], demo["batch_size"], demo["max_steps_per_epoch"],
        demo["max_minutes"], demo["pretrained"])
    assert f"rotation={demo['rotation']}" in at.text_area(key="t_extra").value.splitlines()

    at = small_run(at, tiny_dataset)
    no_exception(at)
    steps = [m.value for m in at.markdown if "steps per epoch" in m.value]
    assert steps and "train images at batch 32" in steps[0]
    assert any("not measured yet" in c.value for c in at.caption)
    button(at, "Estimate cost").click()
    at.run()
    no_exception(at)
    assert any("Estimated time per epoch on cpu" in m.value for m in at.markdown)
    how = [c.value for c in at.caption if c.value.startswith("An estimate, measured")]
    from cxr.dashboard.cost import CPU_WARMUP_BATCH
    assert how and f"`simple_cnn` at 32 px, {CPU_WARMUP_BATCH} images a step" in how[0]
    assert "scaled linearly to batch 32" in how[0]
    assert not any("long run" in e.value for e in at.error)


def test_the_report_preset_fills_the_form(app, fresh_world, no_gpu):
    at = app(fresh_world, PAGE)
    at.selectbox(key="t_model").set_value("simple_cnn")
    at.radio(key="t_preset").set_value("The report")
    at.run()
    no_exception(at)
    assert (at.selectbox(key="t_model").value, at.select_slider(key="t_size").value,
            at.number_input(key="t_epochs").value, at.number_input(key="t_batch").value,
            at.checkbox(key="t_pretrained").value, at.number_input(key="t_steps").value) == (
        "fusion", 224, 25, 32, True, 0)
    assert "schedule=two_phase" in at.text_area(key="t_extra").value.splitlines()


def test_a_long_run_is_not_launched_by_accident(app, fresh_world, tiny_dataset, no_gpu,
                                                monkeypatch):
    from cxr.dashboard import cost
    monkeypatch.setattr(cost, "LONG_EPOCH_S", 0.0)  # every epoch counts as long
    at = small_run(app(fresh_world, PAGE), tiny_dataset, "long")
    button(at, "Launch").click()  # not measured yet: the launch measures first, then refuses
    at.run()
    no_exception(at)
    assert any("This is a long run on cpu" in e.value for e in at.error)
    assert any("Not launched" in w.value for w in at.warning)
    assert button(at, "Launch").disabled and not (fresh_world.runs / "long").exists()
    at.checkbox(key="t_confirm").check()
    at.run()
    assert not button(at, "Launch").disabled
