"""`cxr demo`: the README's run command, from nothing to a working dashboard on synthetic data.

    ./run.sh                      # = .venv/bin/cxr demo
    cxr demo --no-app             # only the pipeline (data, training, evaluation, worklist)
    cxr demo --retrain            # train the demo models again from scratch
    cxr demo --patients 24 --size 64 --set epochs=1   # a tiny demo (the CI test uses this)

What it does, reusing whatever already exists (a second run retrains nothing):
1. starts the dashboard (`streamlit run app.py`) on 127.0.0.1:8501 at once;
2. generates `data/demo` with `cxr synth` if absent, and caches it at the training size
   (`cxr prepare`);
3. trains the four models one after another in the background (fusion first, so the Predict page
   has a fusion checkpoint soonest), with `configs/demo.yaml` (small images, few epochs, random
   init) and a time budget: the yaml's `max_minutes` for fusion, less for the baselines
   (DEMO_BUDGET_MINUTES); an interrupted run is resumed from its `last.pt`;
4. fits each trained run's readout (`cxr calibrate`: calibration, operating points and OOD
   guard from its validation and training films, beside best.pt), evaluates it (`cxr
   evaluate`), compares the runs (`cxr compare`) and imports the test-split predictions into
   the review worklist;
5. records a few SIMULATED review decisions on the fusion queue (cxr/demo_reviews.py: marked
   simulated, made by "simulated reviewer (demo)" from the synthetic labels), so that the Audit
   page has something to show.
Progress goes to `checkpoints/demo_status.json`, which the Home page reads: the current
stage, and a `timeline` of every step that ran, in order (`{"stage": "train fusion",
"start": epoch s, "end": epoch s or null while it runs, "seconds", "ok"}`: data generation,
caching, each model's training, calibration, evaluation and worklist import, the simulated
reviews, compare); a step skipped because its output exists is not in it. Ctrl-C stops the
training step cleanly (SIGTERM -> the trainer saves and marks the run `stopped`) and the app.
Each step is a child process in its own session, so Ctrl-C in the terminal reaches only us.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from cxr.atomic import write_text
from cxr.rundir import RunDir

REPO = Path(__file__).resolve().parents[1]
DEMO_STATUS = "demo_status.json"  # in the runs root: the demo's stage, read by the Home page
DEMO_MODELS = ("fusion", "simple_cnn", "densenet121", "efficientnet_b0")  # a demo choice of
# registry models (cxr/models/registry.py), in training order; `--models` is checked against it
# Minutes of training on a 2-core CPU, so all four fit in 30 minutes with evaluation and a
# fresh install (measured with 6/6 for the last two: 27.6 minutes after the install,
# BENCHMARKS.md). Fusion, and any model not named here, trains for configs/demo.yaml's
# `max_minutes`; these baselines get less. A user's `--set max_minutes=...` comes later on the
# command line and wins.
DEMO_BUDGET_MINUTES = {"simple_cnn": 4.0, "densenet121": 5.0, "efficientnet_b0": 5.0}


def add_arguments(parser) -> None:
    parser.add_argument("--data", type=Path, default=Path("data/demo"), help="demo dataset folder")
    parser.add_argument("--runs", type=Path, default=Path("checkpoints"), help="run directory root")
    parser.add_argument("--worklist", type=Path, default=Path("data/worklist.sqlite"))
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "demo.yaml")
    parser.add_argument("--models", default=",".join(DEMO_MODELS),
                        help="comma-separated models, trained in this order")
    parser.add_argument("--patients", type=int, default=None, help="synth: number of patients")
    parser.add_argument("--size", type=int, default=None, help="synth: image size in pixels")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="training config override (repeatable)")
    parser.add_argument("--passes", type=int, default=None,
                        help="MC-dropout passes for evaluation (default: each run's mc_passes)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--port", type=int, default=8501)
    parser.add_argument("--no-app", action="store_true", help="do not start the dashboard")
    parser.add_argument("--retrain", action="store_true", help="train again even if runs exist")


class Demo:
    """The pipeline's steps as child processes; `self.child` is the one running now."""

    def __init__(self, args):
        self.args = args
        self.child: subprocess.Popen | None = None
        self.status_path = args.runs / DEMO_STATUS
        self.passes = [] if args.passes is None else ["--passes", args.passes]
        self.status = {"stage": "starting", "done": [], "failed": [], "started": time.time(),
                       "timeline": []}

    def set_stage(self, stage: str, done: str | None = None, failed: str | None = None) -> None:
        self.status["stage"] = stage
        if done:
            self.status["done"].append(done)
        if failed:
            self.status["failed"].append(failed)
        self.write_status()
        print(f"[demo] {stage}", flush=True)

    def write_status(self) -> None:
        self.status["updated"] = time.time()
        write_text(self.status_path, json.dumps(self.status, indent=2))

    @contextmanager
    def timed(self, stage: str):
        """Record one step in the status's timeline: start now, end and seconds when it
        returns (ok false when it raised or the entry was marked so)."""
        entry = {"stage": stage, "start": time.time(), "end": None, "seconds": None, "ok": True}
        self.status["timeline"].append(entry)
        self.write_status()
        try:
            yield entry
        except BaseException:
            entry["ok"] = False
            raise
        finally:
            entry["end"] = time.time()
            entry["seconds"] = round(entry["end"] - entry["start"], 3)
            self.write_status()

    def timed_call(self, stage: str, *cxr_args) -> int:
        """`call` inside `timed`: the entry's ok is the exit status 0."""
        with self.timed(stage) as entry:
            rc = self.call(*cxr_args)
            entry["ok"] = rc == 0
        return rc

    def call(self, *cxr_args: str) -> int:
        """Run `cxr ARGS` as a child in its own session and wait for it."""
        cmd = [sys.executable, "-m", "cxr", *map(str, cxr_args)]
        self.child = subprocess.Popen(cmd, start_new_session=True)
        try:
            return self.child.wait()
        except KeyboardInterrupt:
            self.stop_child()  # here, while we still hold the child: it is in its own session
            raise
        finally:
            self.child = None

    def stop_child(self) -> None:
        """SIGTERM is the trainer's stop request: it finishes the step and saves last.pt."""
        if self.child and self.child.poll() is None:
            print("\n[demo] stopping: asking the current step to save and exit...", flush=True)
            self.child.send_signal(signal.SIGTERM)
            try:
                self.child.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.child.kill()

    # -- steps ---------------------------------------------------------------------------
    def ensure_data(self) -> None:
        if (self.args.data / "Data_Entry_2017.csv").is_file():
            return
        self.set_stage(f"generating the synthetic demo dataset in {self.args.data}")
        given = {"--patients": self.args.patients, "--size": self.args.size}
        extra = [x for flag, value in given.items() if value for x in (flag, value)]
        if self.timed_call("data generation", "synth", "--out", self.args.data, *extra) != 0:
            raise RuntimeError("cxr synth failed; see the messages above")

    def ensure_cache(self) -> None:
        """Decode the PNGs once at the training size (`cxr prepare`): on 2 cores, decoding in a
        DataLoader worker steals time from the training step. Up to date: prepare does nothing."""
        from cxr.train.config import load_config
        size = load_config(self.args.config, self.args.overrides).image_size or 128
        self.set_stage(f"caching the demo images at {size} px")
        if self.timed_call("caching", "prepare", "--data", self.args.data, "--size", size) != 0:
            raise RuntimeError("cxr prepare failed; see the messages above")

    def run_dir(self, model: str) -> RunDir:
        return RunDir(self.args.runs / f"demo-{model}")

    def train(self, model: str) -> bool:
        run = self.run_dir(model)
        status = run.status()
        if status == "finished" and not self.args.retrain:
            return True
        self.set_stage(f"training {model} ({run.path})")
        if status in ("running", "stopped", "failed") and run.last.is_file() \
                and not self.args.retrain:
            rc = self.timed_call(f"train {model}", "train", "--resume", run.path)
        else:
            budget = DEMO_BUDGET_MINUTES.get(model)  # None: the yaml's max_minutes
            sets = ([] if budget is None else [f"max_minutes={budget}"]) + self.args.overrides
            sets = [x for kv in sets for x in ("--set", kv)]
            rc = self.timed_call(f"train {model}", "train", "--data", self.args.data,
                                 "--model", model, "--out", run.path,
                                 "--config", self.args.config, *sets, "--force")
        return rc == 0 and run.status() == "finished"

    def calibrate(self, model: str) -> bool:
        """Fit best.pt's readout (`cxr calibrate`: calibration, operating points, OOD guard)
        on the run's validation and training films, before evaluation reports it."""
        run = self.run_dir(model)
        if run.readout.is_file() and not self.args.retrain:
            return True
        self.set_stage(f"calibrating {model} on its validation split")
        return self.timed_call(f"calibrate {model}", "calibrate", "--checkpoint", run.best,
                               *self.passes) == 0

    def evaluate(self, model: str) -> bool:
        run = self.run_dir(model)
        readout_newer = run.readout.is_file() and run.eval.metrics.is_file() and \
            run.readout.stat().st_mtime > run.eval.metrics.stat().st_mtime
        if run.eval.metrics.is_file() and not self.args.retrain and not readout_newer:
            return True
        self.set_stage(f"evaluating {model}")
        return self.timed_call(f"evaluate {model}", "evaluate", "--checkpoint", run.best,
                               "--out", run.eval.path, *self.passes,
                               "--bootstrap", self.args.bootstrap, "--pointing-game") == 0

    def fill_worklist(self, model: str) -> bool:
        run = self.run_dir(model)
        self.set_stage(f"importing {model} test predictions into the worklist")
        return self.timed_call(f"worklist {model}", "worklist", "import", run.eval.predictions,
                               "--model", model, "--checkpoint", run.best,
                               "--db", self.args.worklist, "--images-root", self.args.data) == 0

    def simulate_reviews(self, model: str) -> None:
        """A few simulated decisions on this model's queue (only on a queue nobody decided)."""
        from cxr.demo_reviews import dataset_truth, simulate_reviews
        from cxr.hashing import file_sha256
        from cxr.worklist import Worklist
        with self.timed("simulated reviews") as entry:
            try:
                n = simulate_reviews(Worklist(self.args.worklist),
                                     file_sha256(self.run_dir(model).best),
                                     dataset_truth(self.args.data))
            except (ValueError, OSError) as exc:  # the demo goes on; the Audit page stays empty
                entry["ok"] = False
                self.set_stage(f"simulated reviews failed: {exc}", failed="simulated reviews")
                return
        if n:
            self.set_stage(f"recorded {n} SIMULATED review decisions on the {model} queue "
                           "(marked simulated; for the Audit page)")

    def pipeline(self) -> None:
        self.ensure_data()
        self.ensure_cache()
        evaluated = []
        for model in demo_models(self.args.models):
            if not self.train(model):
                self.set_stage(f"training {model} did not finish", failed=f"train {model}")
                continue
            if not self.calibrate(model):  # evaluation and the worklist work without it
                self.set_stage(f"calibrating {model} failed", failed=f"calibrate {model}")
            if self.evaluate(model) and self.fill_worklist(model):
                if model == "fusion":
                    self.simulate_reviews(model)
                evaluated.append(model)
                self.set_stage(f"{model} trained, evaluated and triaged", done=model)
            else:
                self.set_stage(f"evaluating {model} failed", failed=f"evaluate {model}")
        if len(evaluated) > 1:
            self.set_stage("comparing the models")
            runs = [self.run_dir(m).path for m in evaluated]
            if self.timed_call("compare", "compare", *runs,
                               "--out", self.args.runs / "demo-compare") == 0:
                self.status["done"].append("compare")
        self.set_stage("finished" if not self.status["failed"] else "finished with failures")


def start_app(args) -> subprocess.Popen:
    env = dict(os.environ, CXR_RUNS_DIR=str(args.runs.resolve()),
               CXR_DATA_DIR=str(args.data.resolve().parent),
               CXR_WORKLIST=str(args.worklist.resolve()))
    cmd = [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"),
           "--server.address", "127.0.0.1", "--server.port", str(args.port),
           "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    print(f"[demo] dashboard: http://127.0.0.1:{args.port}  (Ctrl-C stops everything)", flush=True)
    return subprocess.Popen(cmd, start_new_session=True, env=env)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def demo_models(text: str) -> list[str]:
    """The comma-separated `--models` list, every name checked against the model registry
    before the dashboard or any step starts."""
    from cxr.models import MODELS
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in MODELS]
    if unknown or not names:
        problem = f"unknown model(s) {', '.join(unknown)}" if unknown else "no model given"
        raise ValueError(f"--models {text!r}: {problem}; available: {', '.join(MODELS)}")
    return names


def run(args) -> int:
    demo_models(args.models)
    demo = Demo(args)
    app = None if args.no_app else start_app(args)
    # Explicit handlers: a process started in the background by a shell inherits SIGINT
    # ignored, and `kill` (SIGTERM) should stop as cleanly as Ctrl-C.
    signal.signal(signal.SIGINT, _raise_interrupt)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    finished = False
    try:
        demo.pipeline()
        finished = True
        if app:
            print("[demo] all done; the dashboard keeps running (Ctrl-C to stop)", flush=True)
            app.wait()
    except KeyboardInterrupt:  # Demo.call has already stopped the running step
        if not finished:  # after the pipeline, Ctrl-C only stops the dashboard
            demo.set_stage("stopped (run ./run.sh again to resume)")
    finally:
        if app and app.poll() is None:
            app.terminate()
            try:
                app.wait(timeout=20)
            except subprocess.TimeoutExpired:
                app.kill()
    return 0
