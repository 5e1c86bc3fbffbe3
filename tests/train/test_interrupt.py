"""`cxr train` as a real process: SIGTERM stops it cleanly, kill -9 loses at most the epoch in
progress, and `--resume` ends with the same history as an uninterrupted run."""
import json
import os
import signal
import time

import numpy as np
import pandas as pd

from cxr.labels import FINDINGS
from cxr.train import train


def _status(run):
    try:
        return json.loads((run / "progress.json").read_text())
    except (OSError, ValueError):
        return {}


def _wait(proc, condition, what, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        if proc.poll() is not None:
            raise AssertionError(f"cxr train exited ({proc.returncode}) before {what}:\n"
                                 f"{proc.stdout.read()}")
        time.sleep(0.01)
    proc.kill()
    raise AssertionError(f"timed out waiting for {what}")


def test_sigterm_then_kill_9_then_resume_finishes_like_an_uninterrupted_run(
        base_values, reference_run, tmp_path, cxr_command, monkeypatch):
    from cxr.train import TrainConfig
    from cxr.train.loop import Trainer

    run = tmp_path / "run"
    # 1. SIGTERM (to this process, in-process run) once the first epoch is saved: the step
    #    finishes, last.pt is saved, status "stopped", return 0. A no-op handler underneath,
    #    so a signal that arrives after the run returned cannot end pytest.
    old = signal.signal(signal.SIGTERM, lambda *a: None)
    save_last = Trainer.save_last

    def terminate_after_first_epoch(trainer, *args):
        save_last(trainer, *args)
        if (trainer.state.epoch, trainer.state.step) == (1, 0):  # epoch 1's last.pt is saved
            os.kill(os.getpid(), signal.SIGTERM)
    monkeypatch.setattr(Trainer, "save_last", terminate_after_first_epoch)
    try:
        assert train(TrainConfig(**base_values), run) == 0
    finally:
        signal.signal(signal.SIGTERM, old)
        monkeypatch.undo()
    assert _status(run)["status"] == "stopped" and "SIGTERM" in _status(run)["message"]

    # 2. `cxr train --resume` as a process, killed -9 as soon as it trains again: it has no
    #    chance to save anything
    proc = cxr_command("train", "--resume", run)
    first = _status(run).get("global_step", 0)
    _wait(proc, lambda: _status(run).get("pid") == proc.pid
          and _status(run).get("global_step", 0) > first, "the resumed run to take a step")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert _status(run)["status"] == "running", "the run finished before it could be killed"

    # 3. resume again (in-process): finishes, with the uninterrupted run's numbers
    assert train(None, run, resume=True) == 0
    assert _status(run)["status"] == "finished"
    ours, reference = pd.read_csv(run / "history.csv"), pd.read_csv(reference_run / "history.csv")
    assert list(ours["epoch"]) == [1, 2, 3]
    for column in ("train_loss", "val_loss", "val_macro_auc", *[f"val_auc_{f}" for f in FINDINGS]):
        np.testing.assert_allclose(ours[column], reference[column], rtol=1e-5, atol=1e-7,
                                   err_msg=column)
