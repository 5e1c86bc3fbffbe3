"""`cxr pacs watch` against a real Orthanc: it picks up studies stored while it runs, survives the
PACS going away (clear log lines, nothing lost, the study read when the server is back), reads a
study once per checkpoint (also after a restart) and stops cleanly on SIGTERM."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import instances as I

from cxr.pacs.client import Pacs
from cxr.pacs.pull import Options, Puller
from cxr.pacs.watch import Watcher, parse_every
from cxr.worklist import Worklist

ROOT = Path(__file__).resolve().parents[2]


def _wait(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _watcher(orthanc, checkpoint, folder: Path, lines: list) -> Watcher:
    pacs = Pacs.connect(orthanc.dicomweb, attempts=2, first_wait=0.1, max_wait=0.2,
                        log=lines.append)
    puller = Puller(pacs, Options(checkpoint, folder / "wl.sqlite", out=folder / "out",
                                  passes=5), log=lines.append)
    return Watcher(puller, every=0.3, since="20250101", progress=folder / "progress.json",
                   log=lines.append)


def _sops(folder: Path) -> list[str]:
    return sorted(Worklist(folder / "wl.sqlite").cases()["image"])


def test_watch_reads_new_studies_and_survives_the_pacs_going_away(orthanc, checkpoint,
                                                                  tmp_path, pacs_env, capfd):
    lines: list[str] = []
    watcher = _watcher(orthanc, checkpoint, tmp_path, lines)
    first, second = I.single_film_study(seed=11), I.single_film_study(seed=12)
    original = watcher.puller.pacs.instance
    calls = []

    def instance_then_gone(*args):  # the server goes away in the middle of the second study
        calls.append(args[2])
        if args[2] in second["frontal"] and calls.count(args[2]) == 1:
            orthanc.stop()
        return original(*args)

    watcher.puller.pacs.instance = instance_then_gone
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    try:
        _wait(lambda: watcher.rounds >= 1, "the first round")
        orthanc.store(first["files"]["dx_pa"])  # stored while it runs
        _wait(lambda: _sops(tmp_path) == first["frontal"], "the first study")
        orthanc.store(second["files"]["dx_pa"])
        _wait(lambda: any("PACS unreachable" in line for line in lines), "the outage")
        progress = json.loads((tmp_path / "progress.json").read_text())
        assert progress["state"] == "pacs unreachable" and "cannot connect" in progress["error"]
        assert _sops(tmp_path) == first["frontal"]  # nothing half-done
        orthanc.start()
        _wait(lambda: len(_sops(tmp_path)) == 2, "the second study, once the PACS is back")
    finally:
        watcher.stop.set()
        thread.join(30)
        if orthanc.process is None:
            orthanc.start()
    assert not thread.is_alive() and lines[-1] == "stopped"
    outage = [line for line in lines if "PACS unreachable" in line]
    assert outage[0].startswith(f"PACS unreachable: {orthanc.dicomweb}: retrieve an instance "
                                "failed: cannot connect (is the PACS up?)")
    assert "1 study leased, kept for then" in outage[0]
    assert any("retry 1/1 in 0.1 s" in line for line in lines)
    assert not any("Traceback" in line for line in lines)
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err and "Error" not in err, err  # nothing else said it
    assert _sops(tmp_path) == sorted(first["frontal"] + second["frontal"])
    items = Worklist(tmp_path / "wl.sqlite").work_items().set_index("key")
    for study in (first, second):
        item = items.loc[study["study_uid"]]
        assert item.state == "done" and item.attempts == 1  # leased once, read once
    cases = Worklist(tmp_path / "wl.sqlite").cases()
    assert cases["results_sent_at"].notna().all()
    # a restart on the same worklist reads nothing again
    again: list[str] = []
    restarted = _watcher(orthanc, checkpoint, tmp_path, again)
    assert restarted.run(rounds=1) == 0
    assert not any(line.startswith("study ") for line in again) and len(_sops(tmp_path)) == 2
    assert json.loads((tmp_path / "progress.json").read_text())["state"] == "stopped"


def test_sigterm_stops_the_watcher_cleanly(orthanc, checkpoint, tmp_path, pacs_env):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cxr.cli", "pacs", "watch", "--url", orthanc.dicomweb,
         "--every", "1s", "--since", "20250101", "--checkpoint", str(checkpoint), "--db",
         str(tmp_path / "wl.sqlite"), "--out", str(tmp_path / "out"), "--passes", "3",
         "--no-push"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        first = proc.stdout.readline()
        assert "watching" in first and "Ctrl-C or SIGTERM stops" in first, first
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, rest
    assert rest.rstrip().endswith("stopped") and "Traceback" not in rest


def test_every_takes_units():
    assert parse_every("30s") == 30 and parse_every("5m") == 300 and parse_every("2") == 2
    with pytest.raises(ValueError, match="expected seconds"):
        parse_every("soon")



def test_a_refusal_is_named_and_the_watcher_carries_on(orthanc, checkpoint, tmp_path,
                                                       monkeypatch, pacs_env):
    monkeypatch.setenv("CXR_DICOMWEB_PASSWORD", "not-the-Pa55word")
    lines: list[str] = []
    watcher = _watcher(orthanc, checkpoint, tmp_path, lines)
    assert watcher.run(rounds=2) == 0
    refused = [line for line in lines if line.startswith("PACS error: ")]
    assert len(refused) == 2 and "search for studies failed: HTTP 401" in refused[0]
    assert not any("Pa55word" in line for line in lines)
    assert json.loads((tmp_path / "progress.json").read_text())["state"] == "stopped"


def test_a_held_study_taken_over_by_another_worker_is_left_to_it(orthanc, checkpoint, tmp_path,
                                                                 pacs_env):
    """A study this worker held through an outage whose lease ran out and another worker took is
    not read again here: the takeover is logged and nothing is imported by this worker."""
    lines: list[str] = []
    watcher = _watcher(orthanc, checkpoint, tmp_path, lines)
    study = I.single_film_study(seed=21)
    orthanc.store(study["files"]["dx_pa"])
    puller, wl = watcher.puller, Worklist(tmp_path / "wl.sqlite")
    puller.enqueue([study["study_uid"]])  # this study only (the server holds earlier ones)
    [key] = wl.lease_work(puller.sha, puller.opts.worker, seconds=-1)  # ours, already expired
    puller.held = [key]
    assert wl.lease_work(puller.sha, "other-watcher", seconds=300) == [key]  # taken over
    puller.run_leased()
    assert puller.held == [] and wl.cases().empty
    assert any("left to the worker that took it over" in line for line in lines), lines
    item = wl.work_items(puller.sha).iloc[0]
    assert (item.state, item.leased_by) == ("leased", "other-watcher")
