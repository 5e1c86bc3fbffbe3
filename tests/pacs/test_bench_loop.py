"""bench/bench_pacs_loop.py's core (run_loop) against a real Orthanc, tiny: 2 films of 64 px, a
simple_cnn at 64 px, 3 MC passes. Checks what it returns and that its table shows it, not
speed (BENCHMARKS.md has the figures)."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_pacs_loop",
                                                  ROOT / "bench" / "bench_pacs_loop.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_run_loop_measures_each_film_from_stow_to_its_sr(tmp_path, monkeypatch):
    B = _bench()
    reason = B.O.missing()
    if reason:
        pytest.skip(reason)
    monkeypatch.setenv("CXR_DICOMWEB_TOKEN", "the-callers-own")  # set aside, then restored
    ckpt = B.make_checkpoint(tmp_path / "ckpt", "simple_cnn", 64, films=24)
    r = B.run_loop(ckpt, tmp_path / "run", films=2, burst=2, film_px=64, every=0.2, passes=3)
    assert r["films"] == 2 and len(r["latencies"]) == 2 and r["burst"] == 2
    assert r["model"] == "simple_cnn" and r["passes"] == 3
    assert all(t > 0 for t in r["latencies"])
    assert 0 < r["p50"] <= r["p95"] <= max(r["latencies"])
    assert r["films_per_s"] is not None and r["films_per_s"] > 0
    assert r["burst_seconds"] > 0
    assert tuple(r["split"]) == B.STAGES
    for stage in ("WADO retrieve", "predict", "SR build", "STOW of the SR", "QIDO (watcher)"):
        assert r["split"][stage] > 0, stage  # each stage was timed around a real call
    mean = sum(r["latencies"]) / 2
    assert sum(r["split"].values()) <= mean  # per film, a part of each film's time
    assert os.environ["CXR_DICOMWEB_TOKEN"] == "the-callers-own"
    table = B.table(r)
    assert f"| STOW -> SR found, p50 | {r['p50']:.2f} s |" in table
    assert f"| {r['films_per_s']:.3f} films/s |" in table
