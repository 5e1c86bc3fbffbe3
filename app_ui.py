"""Streamlit pieces shared by app.py and the pages (the only place besides them that imports
Streamlit; the logic lives in cxr/dashboard/)."""
from __future__ import annotations

import threading
from pathlib import Path

import streamlit as st

from cxr.dashboard.runs import RunInfo, format_eta
from cxr.dashboard.state import Roots

DISCLAIMER = ("**Research and teaching tool — not for diagnosis.** Not a medical device; "
              "outputs are model estimates from noisy, text-mined labels.")


def roots() -> Roots:
    return Roots.from_env()


def sidebar(r: Roots) -> None:
    with st.sidebar:
        st.warning(DISCLAIMER, icon=":material/warning:")
        with st.expander("Folders", expanded=False):
            st.caption(f"runs: `{r.runs}`  \ndata: `{r.data}`  \nworklist: `{r.worklist}`  \n"
                       "(set CXR_RUNS_DIR, CXR_DATA_DIR, CXR_WORKLIST to move them)")


@st.cache_resource(max_entries=4, show_spinner="Loading the model…")
def cached_model(path: str, mtime: float, device: str):
    """(model, meta), loaded once per checkpoint file version: the key holds its mtime, so a
    retrained best.pt is picked up and a second upload never reloads the same one. The model
    is a `cxr.inference_speed.InferenceModel`: on CPU its backbone runs in ONNX Runtime, and a
    film's features serve its MC dropout and all its Grad-CAMs."""
    from cxr.checkpoint import load_model
    from cxr.inference_speed import InferenceModel
    model, meta = load_model(path, device)
    return InferenceModel(model), meta


def model_for(checkpoint: Path, device: str):
    checkpoint = Path(checkpoint)
    return cached_model(str(checkpoint.resolve()), checkpoint.stat().st_mtime, device)


@st.cache_resource(max_entries=8, show_spinner=False)
def cached_readout(path: str, mtime: float, readout_mtime: float | None):
    """The checkpoint's readout (cxr.readout.load_readout), once per version of either file;
    None without one. A readout of another checkpoint raises ReadoutError (not cached)."""
    from cxr.readout import load_readout
    return load_readout(path)


def readout_for(checkpoint: Path):
    """(readout or None, the sidecar's mtime or None: a cache key for what was computed with it)."""
    from cxr.readout import readout_path
    checkpoint = Path(checkpoint)
    sidecar = readout_path(checkpoint)
    mtime = sidecar.stat().st_mtime if sidecar.is_file() else None
    return cached_readout(str(checkpoint.resolve()), checkpoint.stat().st_mtime, mtime), mtime


def show_notices(notices) -> None:
    """cxr.dashboard.analysis.notices, as prominent as their kind says."""
    for notice in notices:
        {"error": st.error, "warning": st.warning, "info": st.info}[notice.kind](notice.text)


@st.cache_resource(max_entries=4, show_spinner=False)
def _lock(path: str, mtime: float, device: str) -> threading.Lock:
    return threading.Lock()


def model_lock(checkpoint: Path, device: str) -> threading.Lock:
    """One lock per cached model: sessions share it, and MC dropout switches its dropout
    layers to train mode while it samples, so two sessions must not run it at once."""
    checkpoint = Path(checkpoint)
    return _lock(str(checkpoint.resolve()), checkpoint.stat().st_mtime, device)


def run_label(r: RunInfo) -> str:
    auc = f"val AUC {r.best_val_auc:.3f}" if r.best_val_auc is not None else "val AUC n/a"
    return f"{r.name} · {r.model or '?'} · {auc} · {r.status}"


def progress_line(r: RunInfo) -> str:
    parts = [r.status]
    if r.phase:
        parts.append(f"phase {r.phase}")
    if r.epoch is not None:
        parts.append(f"epoch {r.epoch}" + (f"/{r.epochs}" if r.epochs else ""))
    parts.append(f"{r.fraction:.0%}")
    if r.status == "running":
        parts.append(f"ETA {format_eta(r.eta_s)}")
    return " · ".join(parts)


def show_progress(r: RunInfo) -> None:
    st.progress(r.fraction, text=f"**{r.name}** ({r.model}) — {progress_line(r)}")


def demo_banner(demo: dict) -> None:
    """What `cxr demo` is doing, when it runs (read from checkpoints/demo_status.json)."""
    if not demo:
        return
    stage = str(demo.get("stage", ""))
    done = ", ".join(demo.get("done", [])) or "nothing yet"
    failed = ", ".join(demo.get("failed", []))
    text = f"**Demo pipeline:** {stage}  \ndone: {done}"
    if failed:
        text += f"  \nfailed: {failed}"
    if stage.startswith("finished") and not failed:
        st.success(text)
    elif failed:
        st.warning(text)
    else:
        st.info(text)

