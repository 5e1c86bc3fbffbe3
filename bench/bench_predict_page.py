"""Benchmark: upload-to-result time on the dashboard's Predict path (fusion, 224 px, 25 MC-dropout
passes, one Grad-CAM) on CPU, before and after issue 15, side by side in one run.

    .venv/bin/python bench/bench_predict_page.py            # writes its section of BENCHMARKS.md
    .venv/bin/python bench/bench_predict_page.py --sessions 1 --cached 1 --repeats 2 --no-write

- before: the page with the plain torch model, what `app_ui.model_for` returned before issue
  15: MC dropout and each Grad-CAM run the backbone, in torch (eager, fp32).
- after: the page as it is: `app_ui.model_for` gives a `cxr.inference_speed.InferenceModel`
  (the backbone in ONNX Runtime, fp32, run once per film for MC dropout and every Grad-CAM).
Each session is a fresh Python process running the real page under Streamlit's AppTest (what a
fresh `streamlit run app.py` does, minus the browser): the home page is rendered (not timed),
then the Predict page is opened (timed: "open", which imports timm and loads the checkpoint
into st.cache_resource while the clinician picks a film, and after issue 15 exports it to
ONNX Runtime), then one film is uploaded (timed: "first") and then other films (timed:
"cached"; each film is new to the page, so nothing is served from st.cache_data). Both paths
run today's page, which loads the model when it opens (before issue 15 it did so after the
first upload), so "open + first upload" is the figure to compare for a fresh server. Before
and after sessions alternate, so load drifts hit both. The
script run covers decoding, MC dropout, one Grad-CAM, the overlay and building the plotly
figures; the browser's own rendering is not included. A breakdown of the cached path (the
cxr.dashboard.analysis calls the page makes, model loaded) is measured in this process, the
two paths interleaved repeat by repeat; the outputs' largest differences are reported too.
Films: real 1024x1024 NIH PNGs from ../shared/data/nih when present, else generated ones. The
checkpoint is a randomly initialised fusion model at 224 px saved by cxr.checkpoint (the same
size and cost as a trained one). Torch threads: --threads (default 1, as OMP_NUM_THREADS for
every process; ONNX Runtime uses as many as torch): on a shared 2-core VM more threads than
free cores make the timings swing tenfold; on a dedicated machine pass --threads 0 to keep
torch's default.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from _report import write_section  # noqa: E402  bench/_report.py (bench/ is on sys.path)

NIH_DIR = Path(os.environ.get("CXR_NIH_DIR", REPO.parent / "shared" / "data" / "nih"))
SECTION = "## Dashboard Predict path"
MACHINE = "2-core CPU dev VM, no GPU"
PASSES = 25


def films(tmp: Path, n: int) -> tuple[list[Path], str]:
    real = sorted((NIH_DIR / "images").glob("*.png"))[:n]
    if len(real) == n:
        return real, f"real NIH ChestX-ray14 PNGs (1024x1024), e.g. {real[0].name}"
    from PIL import Image
    out = []
    for i in range(n):
        rng = np.random.default_rng(i)
        path = tmp / f"film{i}.png"
        Image.fromarray((rng.random((1024, 1024)) * 255).astype(np.uint8)).save(path)
        out.append(path)
    return out, "generated 1024x1024 PNGs (no ../shared/data/nih here)"


def make_checkpoint(tmp: Path) -> Path:
    import torch
    from cxr.checkpoint import save_checkpoint
    from cxr.models import create_model
    torch.manual_seed(0)
    model = create_model("fusion", pretrained=False)  # 224 px, the report's configuration
    run = tmp / "runs" / "bench-fusion"
    save_checkpoint(run / "best.pt", model, {"config": {"model": "fusion"}, "epoch": 1})
    (run / "progress.json").write_text(json.dumps({"status": "finished", "model": "fusion"}))
    return run / "best.pt"


SESSION = r"""
import json, sys, time
from pathlib import Path
from streamlit.testing.v1 import AppTest
path, films = sys.argv[1], [Path(p) for p in sys.argv[2:]]
if path == "before":  # the page's model as it was before issue 15: the plain torch model
    import streamlit as st
    import app_ui
    from cxr.checkpoint import load_model

    @st.cache_resource(max_entries=4, show_spinner="Loading the model…")
    def plain_model(path, mtime, device):
        return load_model(path, device)

    app_ui.model_for = lambda checkpoint, device: plain_model(
        str(Path(checkpoint).resolve()), Path(checkpoint).stat().st_mtime, device)
at = AppTest.from_file("{app}", default_timeout=900).run()
at.switch_page("pages/1_Predict.py")
start = time.perf_counter()
at.run()  # opening the page loads the model (cached per checkpoint version)
times = [time.perf_counter() - start]
assert not at.exception, at.exception
for film in films:
    at.file_uploader(key="film").set_value((film.name, film.read_bytes(), "image/png"))
    start = time.perf_counter()
    at.run()
    times.append(time.perf_counter() - start)
    assert not at.exception and not at.error, (at.exception, at.error)
    assert any(": p = " in c for img in at.image for c in img.captions), "no Grad-CAM overlay"
print(json.dumps(times))
"""
PATHS = ("before", "after")
KINDS = ("open", "first", "open + first", "cached")


def session(path: str, films_: list[Path], env: dict) -> list[float]:
    code = SESSION.replace("{app}", str(REPO / "app.py"))
    out = subprocess.run([sys.executable, "-c", code, path, *map(str, films_)], env=env,
                         cwd=REPO, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{path} session failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


STEPS = ("decode + checks", f"MC dropout ({PASSES} passes)", "Grad-CAM (top finding)", "overlay")


def page_steps(model, data: bytes, name: str) -> tuple[list[float], object, np.ndarray]:
    """The cxr.dashboard.analysis calls one upload makes on the page, timed step by step."""
    from cxr.dashboard import analysis
    t0 = time.perf_counter()
    img = analysis.read_upload(data, name)
    t1 = time.perf_counter()
    result = analysis.analyse(model, img.pixels, passes=PASSES)
    t2 = time.perf_counter()
    finding = result.labels[result.top(1)[0]]
    cam = analysis.explain(model, img.pixels, [finding])[finding]
    t3 = time.perf_counter()
    analysis.overlay(analysis.display_film(img.pixels), cam, 0.4)
    t4 = time.perf_counter()
    return [t1 - t0, t2 - t1, t3 - t2, t4 - t3], result, cam


def breakdown(checkpoint: Path, pool: list[Path], repeats: int) -> dict:
    """Both paths in this process, interleaved; the film changes every repeat, and the fast
    model's kept maps are cleared, so every repeat pays for its backbone pass."""
    from cxr.checkpoint import load_model
    from cxr.inference_speed import InferenceModel
    plain, _ = load_model(checkpoint, "cpu")
    start = time.perf_counter()
    fast = InferenceModel(plain)
    build_s = time.perf_counter() - start
    models = {"before": plain, "after": fast}
    steps = {path: [[] for _ in STEPS] for path in PATHS}
    diffs = {"probability": 0.0, "std": 0.0, "Grad-CAM": 0.0}
    for r in range(repeats):
        film = pool[r % len(pool)]
        fast.clear_cache()
        out = {}
        for path in (PATHS if r % 2 == 0 else PATHS[::-1]):
            times, result, cam = page_steps(models[path], film.read_bytes(), film.name)
            out[path] = result, cam
            for column, t in zip(steps[path], times):
                column.append(t)
        (a, cam_a), (b, cam_b) = out["before"], out["after"]
        diffs["probability"] = max(diffs["probability"], float(np.abs(a.mean - b.mean).max()))
        diffs["std"] = max(diffs["std"], float(np.abs(a.std - b.std).max()))
        diffs["Grad-CAM"] = max(diffs["Grad-CAM"], float(np.abs(cam_a - cam_b).max()))
    medians = {path: [statistics.median(c) for c in steps[path]] for path in PATHS}
    totals = {path: statistics.median(map(sum, zip(*steps[path]))) for path in PATHS}
    return {"medians": medians, "totals": totals, "build_s": build_s, "diffs": diffs}


def machine_line(load_before: float) -> str:
    import torch
    return (f"`.venv/bin/python bench/bench_predict_page.py` on a {MACHINE} "
            f"({platform.machine()}, {torch.cpu.get_capabilities().get('cpu_name', 'CPU')}, "
            f"Python {platform.python_version()}, torch {torch.__version__.split('+')[0]}, "
            f"onnxruntime {_ort_version()}, {torch.get_num_threads()} thread(s)), "
            f"{time.strftime('%Y-%m-%d')}, load average before / after "
            f"{load_before:.1f} / {os.getloadavg()[0]:.1f} (on 2 cores, a load near 1 is this "
            "benchmark alone); the ratios, measured side by side, carry over to other machines "
            "better than the absolute times.")


def _ort_version() -> str:
    import onnxruntime
    return onnxruntime.__version__


NOTE = ("Both paths run today's page and today's `cxr.explain.overlay`. Before issue 15 the "
        "page loaded the model at the first upload rather than when it opened (so compare "
        "\"open + first upload\" for a fresh server), and its overlay blend was slower (now "
        "the same bits in place), which these before figures leave out.")


def report(times: dict, parts: dict, described: str, sessions: int, load_before: float) -> str:
    med = {key: statistics.median(v) for key, v in times.items()}
    row = lambda label, kind: (  # noqa: E731
        f"| {label} | {med['before', kind]:.2f} | {med['after', kind]:.2f} | "
        f"{med['before', kind] / med['after', kind]:.1f}x | {len(times['after', kind])} |")
    lines = [SECTION, "", machine_line(load_before),
             f"Fusion model at 224 px, {PASSES} MC-dropout passes, one Grad-CAM, CPU; films: "
             f"{described}. {sessions} fresh sessions (processes) per path, alternating, "
             "running the Predict page under Streamlit's AppTest; times are the script run "
             "after the upload (no browser rendering). Before: the plain torch model (MC "
             "dropout and the Grad-CAM each run the backbone). After: `InferenceModel` (the "
             "backbone in ONNX Runtime, once per film).", "",
             "| page run | before median (s) | after median (s) | before / after | n |",
             "|---|---:|---:|---:|---:|",
             row("open the page (imports, loads the checkpoint; after: + ONNX export)",
                 "open"),
             row("first upload", "first"), row("open + first upload", "open + first"),
             row("later uploads (model loaded)", "cached"), "", NOTE, "",
             f"Cached path by step (median of interleaved repeats, model loaded, this process; "
             f"`InferenceModel(model)` itself, the export, took {parts['build_s']:.1f} s):", "",
             "| step | before (s) | after (s) |", "|---|---:|---:|"]
    for i, step in enumerate(STEPS):
        lines.append(f"| {step} | {parts['medians']['before'][i]:.3f} | "
                     f"{parts['medians']['after'][i]:.3f} |")
    tb, ta = parts["totals"]["before"], parts["totals"]["after"]
    lines.append(f"| total | {tb:.3f} | {ta:.3f} ({tb / ta:.1f}x) |")
    d = parts["diffs"]
    lines += ["", "Largest differences after - before over these films (fp32 both): "
              f"probability {d['probability']:.1e}, std {d['std']:.1e}, Grad-CAM map "
              f"{d['Grad-CAM']:.1e}. The rest of a page run is Streamlit and plotly (figures, "
              "the table, the image encoding)."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=3, help="fresh processes per path")
    parser.add_argument("--cached", type=int, default=2, help="later uploads per session")
    parser.add_argument("--repeats", type=int, default=6, help="breakdown repeats per path")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: default)")
    parser.add_argument("--no-write", action="store_true", help="print only, leave BENCHMARKS.md")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.threads:
        import torch
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the sessions' processes too
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pool, described = films(tmp, 1 + args.cached)
        checkpoint = make_checkpoint(tmp)
        env = {**os.environ, "CXR_RUNS_DIR": str(tmp / "runs"), "CXR_DATA_DIR": str(tmp / "data"),
               "CXR_WORKLIST": str(tmp / "data" / "worklist.sqlite")}
        times = {(path, kind): [] for path in PATHS for kind in KINDS}
        for i in range(args.sessions):
            order = pool[i % len(pool):] + pool[:i % len(pool)]  # each session starts elsewhere
            for path in (PATHS if i % 2 == 0 else PATHS[::-1]):
                t = session(path, order, env)
                times[path, "open"].append(t[0])
                times[path, "first"].append(t[1])
                times[path, "open + first"].append(t[0] + t[1])
                times[path, "cached"] += t[2:]
                print(f"session {i + 1} {path}: open {t[0]:.2f} s, first {t[1]:.2f} s, then "
                      f"{', '.join(f'{x:.2f}' for x in t[2:])} s", flush=True)
        parts = breakdown(checkpoint, pool, args.repeats)
    text = report(times, parts, described, args.sessions, load_before)
    print(text)
    if not args.no_write:
        write_section(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
