"""Benchmark: the reading-room loop, from a film stored in a PACS to its SR back in that PACS.

    .venv/bin/python bench/bench_pacs_loop.py               # writes its section of BENCHMARKS.md
    .venv/bin/python bench/bench_pacs_loop.py --films 5 --burst 5 --no-write

A real Orthanc (tests/pacs/orthanc.py, the PACS tests' server) and a watcher as `cxr pacs
watch` runs one (cxr.pacs.watch.Watcher over cxr.pacs.pull.Puller, in-process, in a thread,
--every seconds between rounds, the checkpoint's default MC passes), on a random-init model
with a readout fitted as the PACS tests fit one (skill is not measured here, only time).
Films are made as the PACS tests make them (tests/pacs/instances.py: one DX PA film per
study, 12-bit, uncompressed) at --film-px, and stored by STOW-RS.
  - latency: one film at a time (the next is stored once the previous SR is found): seconds
    from the film's STOW to its Comprehensive SR found by QIDO-RS (SOP Class, in the study),
    p50 and p95; polled every --poll seconds, so the figure includes up to --every of waiting
    for the watcher's next round. The split (WADO retrieve, predict, worklist import, SR
    build, STOW of the SR, the watcher's QIDO searches) is timed around those calls.
  - throughput: --burst films stored at once; films/s of the one watcher in steady state,
    (burst - 1) / (time the last SR was found - time the first was found).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))  # _report, also when a test imports this file
sys.path.insert(0, str(REPO / "tests" / "pacs"))  # the PACS tests' Orthanc and instances

import instances as I  # noqa: E402  tests/pacs/instances.py
import orthanc as O  # noqa: E402  tests/pacs/orthanc.py
from _report import write_section  # noqa: E402  bench/_report.py

SECTION = "## Reading-room loop (PACS)"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
CREDENTIALS = ("CXR_DICOMWEB_USER", "CXR_DICOMWEB_PASSWORD", "CXR_DICOMWEB_TOKEN",
               "CXR_DICOMWEB_AUTH_FILE")
STAGES = ("WADO retrieve", "predict", "worklist import", "SR build", "STOW of the SR",
          "QIDO (watcher)")


def make_checkpoint(folder: Path, model: str = "fusion", size: int = 224,
                    films: int = 40) -> Path:
    """A random-init `model` at `size` px and its readout, fitted as tests/pacs/conftest.py
    fits one: made-up validation labels, the features of noise films."""
    import torch

    from cxr.checkpoint import save_checkpoint
    from cxr.hashing import file_sha256
    from cxr.labels import FINDINGS
    from cxr.models import create_model
    from cxr.readout import fit_readout, save_readout

    torch.manual_seed(0)
    net = create_model(model, pretrained=False, input_size=size)
    ckpt = save_checkpoint(Path(folder) / "best.pt", net, {})
    rng = np.random.default_rng(0)
    y = (rng.random((films // 2, 14)) < 0.3).astype(np.uint8)
    y[0], y[1] = 1, 0
    p = np.clip(0.5 * y + 0.5 * rng.random(y.shape), 0, 1)
    noise = torch.rand(films, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        feats = torch.cat([net.eval().pool_features(net.forward_features(b))
                           for b in noise.split(8)]).numpy()
    save_readout(fit_readout(y, p, feats[:films // 2], feats[films // 2:], file_sha256(ckpt),
                             FINDINGS), ckpt)
    return ckpt


class _Clock:
    """Seconds spent in each wrapped call, summed per stage."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.lock = threading.Lock()

    def wrap(self, stage: str, fn):
        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                with self.lock:
                    self.seconds[stage] += time.perf_counter() - t
        return timed

    def snapshot(self) -> dict[str, float]:
        with self.lock:
            return dict(self.seconds)


def _instrument(puller, clock: _Clock):
    """Time the watcher's own calls (the same objects, wrapped where they are looked up);
    returns the function that undoes the one module-level wrap."""
    from cxr.pacs import pull

    pacs = puller.pacs
    pacs.instance = clock.wrap("WADO retrieve", pacs.instance)
    pacs.store = clock.wrap("STOW of the SR", pacs.store)
    pacs.studies = clock.wrap("QIDO (watcher)", pacs.studies)
    pacs.instances = clock.wrap("QIDO (watcher)", pacs.instances)
    puller.worklist.import_predictions = clock.wrap("worklist import",
                                                    puller.worklist.import_predictions)
    puller._predict_and_import = clock.wrap("predict", puller._predict_and_import)  # - import
    sr = pull.result_sr  # Puller._push looks it up in cxr.pacs.pull at each call
    pull.result_sr = clock.wrap("SR build", sr)
    return lambda: setattr(pull, "result_sr", sr)


def _sr_found(pacs, study_uid: str) -> bool:
    return bool(pacs.instances(study_uid, sop_class=COMPREHENSIVE_SR))


def _store(pacs, seed: int, film_px: int) -> tuple[str, float]:
    study = I.single_film_study(seed=seed, size=film_px)
    ds = I.read(study["files"]["dx_pa"])
    t = time.perf_counter()
    pacs.store([ds], study["study_uid"])
    return study["study_uid"], t


def run_loop(checkpoint: Path, folder: Path, films: int = 20, burst: int = 20,
             film_px: int = 1024, every: float = 0.5, poll: float = 0.05,
             passes: int | None = None, timeout: float = 300.0) -> dict:
    """Start Orthanc and a watcher, measure; returns latencies, p50, p95, films/s, the split."""
    from cxr.pacs.client import Pacs
    from cxr.pacs.pull import Options, Puller
    from cxr.pacs.watch import Watcher

    reason = O.missing()
    if reason:
        raise RuntimeError(reason)
    folder = Path(folder)
    server = O.Orthanc(folder / "orthanc").start()
    env = {k: os.environ.pop(k, None) for k in CREDENTIALS}
    os.environ["CXR_DICOMWEB_USER"], os.environ["CXR_DICOMWEB_PASSWORD"] = O.USER, O.PASSWORD
    lines: list[str] = []
    try:
        modality = Pacs.connect(server.dicomweb)  # the modality (stores films, finds SRs)
        puller = Puller(Pacs.connect(server.dicomweb, log=lines.append),
                        Options(checkpoint, folder / "wl.sqlite", out=folder / "out",
                                passes=passes), log=lines.append)
        clock = _Clock()
        undo = _instrument(puller, clock)
        watcher = Watcher(puller, every=every, since=I.STUDY_DATE, log=lines.append)
        thread = threading.Thread(target=watcher.run, daemon=True)
        thread.start()
        try:
            latencies = []
            for i in range(films):
                study, t0 = _store(modality, 1000 + i, film_px)
                _wait(lambda s=study: _sr_found(modality, s), poll, timeout, study, lines)
                latencies.append(time.perf_counter() - t0)
            split = clock.snapshot()
            stored = [_store(modality, 5000 + i, film_px) for i in range(burst)]
            found: dict[str, float] = {}
            deadline = time.perf_counter() + timeout * max(1, burst)
            while len(found) < burst:
                for study, _ in stored:
                    if study not in found and _sr_found(modality, study):
                        found[study] = time.perf_counter()
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"{burst - len(found)} SRs not found: {lines[-5:]}")
                time.sleep(max(poll, 0.25))
        finally:
            watcher.stop.set()
            thread.join(60)
            undo()
    finally:
        server.stop()
        for key, value in env.items():  # the caller's environment as it was
            os.environ.pop(key, None)
            if value is not None:
                os.environ[key] = value
    split["predict"] -= split.get("worklist import", 0.0)
    times = sorted(found.values())
    rate = (burst - 1) / (times[-1] - times[0]) if burst > 1 and times[-1] > times[0] else None
    return {"films": films, "burst": burst, "film_px": film_px, "every": every,
            "passes": puller.passes, "model": puller.model_name,
            "latencies": latencies, "p50": _percentile(latencies, 50),
            "p95": _percentile(latencies, 95), "films_per_s": rate,
            "burst_seconds": times[-1] - stored[0][1],
            "split": {s: split.get(s, 0.0) / films for s in STAGES}}


def _wait(condition, poll, timeout, study, lines) -> None:
    deadline = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > deadline:
            raise RuntimeError(f"study {study}: no SR within {timeout:g} s; watcher said "
                               f"{lines[-5:]}")
        time.sleep(poll)


def _percentile(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q))


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, no GPU"


class LoadSampler:
    """os.getloadavg()'s 1-minute figure every few seconds while the bench runs."""

    def __init__(self, every: float = 5.0):
        self.samples, self.every, self.stop = [os.getloadavg()[0]], every, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.wait(self.every):
            self.samples.append(os.getloadavg()[0])

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.samples.append(os.getloadavg()[0])

    def line(self) -> str:
        s = self.samples
        return (f"1-min load average during the run: min {min(s):.1f}, median "
                f"{statistics.median(s):.1f}, max {max(s):.1f} (on {os.cpu_count()} cores)")


def table(r: dict) -> str:
    latency = sum(r["split"].values())
    rows = ["| measure | value |", "|---|---|",
            f"| films (one at a time) | {r['films']} |",
            f"| STOW -> SR found, p50 | {r['p50']:.2f} s |",
            f"| STOW -> SR found, p95 | {r['p95']:.2f} s |",
            f"| one watcher, steady state ({r['burst']} films stored at once) | "
            + (f"{r['films_per_s']:.3f} films/s |" if r["films_per_s"] else "n/a |"),
            "", "| stage (mean per film, one at a time) | seconds |", "|---|---|"]
    rows += [f"| {s} | {v:.3f} |" for s, v in r["split"].items()]
    rows.append(f"| rest: waiting for the round, worklist, CSVs, polling | "
                f"{statistics.mean(r['latencies']) - latency:.3f} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--films", type=int, default=20, help="films stored one at a time")
    ap.add_argument("--burst", type=int, default=20, help="films stored at once (films/s)")
    ap.add_argument("--film-px", type=int, default=1024, help="film side in pixels")
    ap.add_argument("--model", default="fusion")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--every", type=float, default=0.5, help="the watcher's --every, seconds")
    ap.add_argument("--passes", type=int, help="MC passes (default: the checkpoint's default)")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, LoadSampler() as load:
        t = time.perf_counter()
        ckpt = make_checkpoint(Path(tmp), args.model, args.image_size)
        print(f"checkpoint ready in {time.perf_counter() - t:.0f} s", flush=True)
        r = run_loop(ckpt, Path(tmp), args.films, args.burst, args.film_px, args.every,
                     passes=args.passes)
    command = " ".join([".venv/bin/python bench/bench_pacs_loop.py"]
                       + [a for a in (argv if argv is not None else sys.argv[1:])
                          if a != "--no-write"])
    passes = "the default" if args.passes is None else "--passes"
    text = "\n".join([
        SECTION, "", f"    {command}", "",
        _wrap(f"A real Orthanc {_orthanc_version()} (tests/pacs/orthanc.py) and one watcher as "
              f"`cxr pacs watch --every {args.every:g}s` runs it (cxr.pacs.watch.Watcher, "
              f"in-process), {r['model']} random init at {args.image_size} px, {r['passes']} "
              f"MC passes ({passes}), on CPU; films {args.film_px}x{args.film_px} 12-bit "
              "uncompressed DX PA (tests/pacs/instances.py; 1024 px is the NIH films' size, "
              "a hospital's 2-3k px DX moves 4-9x the bytes), one study each, stored by "
              "STOW-RS; an SR is found by QIDO-RS (Comprehensive SR SOP Class, in the study) "
              "polled every 0.05 s (0.25 s in the burst)."), "",
        _wrap(f"Machine: {machine()}. {load.line()}. Other jobs shared the machine during the "
              "run, so these are figures under load, not of an idle machine."), "",
        table(r), "",
        _wrap("Latency includes up to --every of waiting for the watcher's next round; "
              "throughput is one watcher reading one study at a time (films/s = 1 / the "
              "per-film time once busy). Predict is one backbone pass and the MC samples of "
              "the head (cxr.uncertainty.mc_predict), the OOD score and the predictions CSV; "
              "SR build is highdicom's ComprehensiveSR (cxr.pacs.sr.result_sr); QIDO (watcher) "
              "includes the searches of the rounds that ran while a film waited, so it "
              "overlaps the waiting. The bench's own QIDO polling runs on the same cores."),
        ""])
    print(text)
    if not args.no_write:
        write_section(text)
    return 0


def _wrap(paragraph: str) -> str:
    import textwrap
    return textwrap.fill(paragraph, 100, break_long_words=False, break_on_hyphens=False)


def _orthanc_version() -> str:
    import subprocess
    try:
        out = subprocess.run([O.ORTHANC, "--version"], capture_output=True, text=True,
                             timeout=10, check=False).stdout.split()
        return out[1] if len(out) > 1 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


if __name__ == "__main__":
    sys.exit(main())
