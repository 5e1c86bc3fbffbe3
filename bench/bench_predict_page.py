"""Benchmark: upload-to-result time on the dashboard's Predict path (fusion, 224 px, 25 MC-dropout
passes, one Grad-CAM), on CPU: the first upload (imports + model load) and later ones (cached).

    .venv/bin/python bench/bench_predict_page.py            # writes its section of BENCHMARKS.md
    .venv/bin/python bench/bench_predict_page.py --sessions 3 --no-write

Each session is a fresh Python process running the real page under Streamlit's AppTest (what a
fresh `streamlit run app.py` does, minus the browser): the Predict page is rendered (not timed),
then one film is uploaded (timed: "first", which pays for importing timm and loading the
checkpoint into st.cache_resource) and then two other films (timed: "cached", the model is not
reloaded). The script run covers decoding, MC dropout, one Grad-CAM, the overlay and building
the plotly figures; the browser's own rendering is not included. A breakdown of the cached path
(the cxr.dashboard.analysis calls, model already loaded) is measured in this process.
Films: real 1024x1024 NIH PNGs from ../shared/data/nih when present, else generated ones. The
checkpoint is a randomly initialised fusion model at 224 px saved by cxr.checkpoint (the same
size and cost as a trained one). Torch threads: --threads (default 1, as OMP_NUM_THREADS for
every process): on a shared 2-core VM more threads than free cores make the timings swing
tenfold; on a dedicated machine pass --threads 0 to keep torch's default.
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
    import numpy as np
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


SESSION = r'''
import json, sys, time
from pathlib import Path
from streamlit.testing.v1 import AppTest
films = [Path(p) for p in sys.argv[1:]]
at = AppTest.from_file("{app}", default_timeout=900).run()
at.switch_page("pages/1_Predict.py").run()
assert not at.exception, at.exception
times = []
for film in films:
    at.file_uploader(key="film").set_value((film.name, film.read_bytes(), "image/png"))
    start = time.perf_counter()
    at.run()
    times.append(time.perf_counter() - start)
    assert not at.exception and not at.error, (at.exception, at.error)
    assert any(": p = " in c for img in at.image for c in img.captions), "no Grad-CAM overlay"
print(json.dumps(times))
'''


def session(films_: list[Path], env: dict) -> list[float]:
    code = SESSION.replace("{app}", str(REPO / "app.py"))
    out = subprocess.run([sys.executable, "-c", code, *map(str, films_)], env=env, cwd=REPO,
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"session failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def full_backward_cam(model, x, finding: str):
    """pytorch-grad-cam hooked on the fused layer of the whole model: what cxr.explain.cam_maps
    would cost if it back-propagated through DenseNet and EfficientNet."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    cam = GradCAM(model, [model.gradcam_layer])
    try:
        return cam(x[None], [ClassifierOutputTarget(list(model.labels).index(finding))])
    finally:
        cam.activations_and_grads.release()


def breakdown(checkpoint: Path, film: Path, repeats: int) -> dict[str, float]:
    from cxr.checkpoint import load_model
    from cxr.dashboard import analysis
    model, _ = load_model(checkpoint, "cpu")
    data = film.read_bytes()
    parts: dict[str, list[float]] = {"decode + checks": [], f"MC dropout ({PASSES} passes)": [],
                                     "Grad-CAM, head only (the page's)": [], "overlay": [],
                                     "for comparison: Grad-CAM through both backbones": []}
    for _ in range(repeats):
        t0 = time.perf_counter()
        img = analysis.read_upload(data, film.name)
        t1 = time.perf_counter()
        result = analysis.analyse(model, img.pixels, passes=PASSES)
        t2 = time.perf_counter()
        finding = result.labels[result.top(1)[0]]
        cam = analysis.explain(model, img.pixels, [finding])[finding]
        t3 = time.perf_counter()
        analysis.overlay(analysis.display_film(img.pixels), cam, 0.4)
        t4 = time.perf_counter()
        full_backward_cam(model, analysis.to_input(model, img.pixels), finding)
        t5 = time.perf_counter()
        for key, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            parts[key].append(dt)
    return {k: statistics.median(v) for k, v in parts.items()}


def report(first, cached, parts, described, sessions, load_s) -> str:
    import torch
    f, c = statistics.median(first), statistics.median(cached)
    lines = [SECTION, "",
             f"`.venv/bin/python bench/bench_predict_page.py` on a {MACHINE} "
             f"({platform.machine()}, Python {platform.python_version()}, torch "
             f"{torch.__version__.split('+')[0]}, {torch.get_num_threads()} torch thread(s)), "
             f"{time.strftime('%Y-%m-%d')}, load average {os.getloadavg()[0]:.1f} (machine "
             "shared with other jobs).",
             f"Fusion model at 224 px, {PASSES} MC-dropout passes, one Grad-CAM, CPU; films: "
             f"{described}. {sessions} fresh sessions (processes) running the Predict page "
             "under Streamlit's AppTest; times are the script run after the upload (no browser "
             "rendering).", "",
             "| upload | median (s) | min (s) | max (s) | n |", "|---|---:|---:|---:|---:|",
             f"| first (imports timm, loads the checkpoint) | {f:.2f} | {min(first):.2f} | "
             f"{max(first):.2f} | {len(first)} |",
             f"| later (model cached) | {c:.2f} | {min(cached):.2f} | {max(cached):.2f} | "
             f"{len(cached)} |", "",
             f"First / cached: {f / c:.1f}x. Loading the checkpoint alone (`load_model`, timm "
             f"already imported): {load_s:.2f} s.", "",
             "Cached path, by step (median, model loaded, this process):", "",
             "| step | seconds |", "|---|---:|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in parts.items()]
    head, full = (v for k, v in parts.items() if "Grad-CAM" in k)
    lines += ["", "`cxr.explain.cam_maps` (the page, `cxr predict --cam`, the pointing game) "
              "back-propagates through the head only (the backbones run once without autograd; "
              "the same maps, tests/test_explain.py): "
              f"{full / head:.1f}x faster than through both backbones. The rest of a page run "
              "is Streamlit and plotly (figures, the table, the image encoding)."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=3, help="fresh processes (first uploads)")
    parser.add_argument("--cached", type=int, default=2, help="later uploads per session")
    parser.add_argument("--repeats", type=int, default=5, help="breakdown repeats")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: default)")
    parser.add_argument("--no-write", action="store_true", help="print only, leave BENCHMARKS.md")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.threads:
        import torch
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the sessions' processes too
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pool, described = films(tmp, 1 + args.cached)
        checkpoint = make_checkpoint(tmp)
        env = {**os.environ, "CXR_RUNS_DIR": str(tmp / "runs"), "CXR_DATA_DIR": str(tmp / "data"),
               "CXR_WORKLIST": str(tmp / "data" / "worklist.sqlite")}
        first, cached = [], []
        for i in range(args.sessions):
            order = pool[i % len(pool):] + pool[:i % len(pool)]  # each session starts elsewhere
            times = session(order, env)
            first.append(times[0])
            cached += times[1:]
            print(f"session {i + 1}: first {times[0]:.2f} s, then "
                  f"{', '.join(f'{t:.2f}' for t in times[1:])} s", flush=True)
        from cxr.checkpoint import load_model
        load_model(checkpoint, "cpu")  # imports timm once, so the next load is the file alone
        start = time.perf_counter()
        load_model(checkpoint, "cpu")
        load_s = time.perf_counter() - start
        parts = breakdown(checkpoint, pool[0], args.repeats)
    text = report(first, cached, parts, described, args.sessions, load_s)
    print(text)
    if not args.no_write:
        write_section(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
