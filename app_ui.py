"""Streamlit pieces shared by app.py and the pages (the only place besides them that imports
Streamlit; the logic lives in cxr/dashboard/)."""
from __future__ import annotations

import threading
from pathlib import Path

import streamlit as st

from cxr.dashboard import plain
from cxr.dashboard.auth import (AuthConfigError, AuthSettings, Viewer, host_problem,
                                load_settings, served_locally)
from cxr.dashboard.runs import RunInfo, format_eta
from cxr.dashboard.state import Roots
from cxr.worklist import mask

DISCLAIMER = ("**Research and teaching tool — not for diagnosis.** Not a medical device; "
              "outputs are model estimates from noisy, text-mined labels.")


def roots() -> Roots:
    return Roots.from_env()


def auth_settings() -> AuthSettings:
    """[auth] and [cxr] from Streamlit's secrets (.streamlit/secrets.toml, or --secrets.files)."""
    secrets = st.secrets.to_dict() if st.secrets.load_if_toml_exists() else None
    return load_settings(secrets, st.get_option("secrets.files"))


def leave_pages_folder_mode() -> None:
    """Until app.py has called st.navigation once in this server process, Streamlit treats an
    app with a `pages/` folder as a multipage app of the first kind: a page opened by its URL
    runs directly, under a page list made from the folder, whose home entry is "app" (the file
    name). Switch that mode off and run again: app.py then runs first (its page list, "Home"
    first) and st.navigation runs the page the URL names. Once per session: the mode is the
    server's, so only its first run can be in it (AppTest resets it before every run, and a
    second rerun there would drop the run's button clicks). Pinned streamlit==1.67.0;
    tests/browser/test_navigation.py checks it in a real browser."""
    from streamlit.runtime.pages_manager import PagesManager
    if PagesManager.uses_pages_directory and "_cxr_pages_mode_left" not in st.session_state:
        st.session_state["_cxr_pages_mode_left"] = True
        PagesManager.uses_pages_directory = False  # what st.navigation itself sets
        st.rerun()


def viewer() -> Viewer:
    """Every page's first line. The signed-in user (or, without [auth], the local user);
    without a session only the sign-in screen is drawn and the script run ends here. A request
    under a host name the app does not answer to (DNS rebinding) gets an error and nothing
    else: the session's data only ever travels in what the script draws after this."""
    leave_pages_folder_mode()
    try:
        settings = auth_settings()
    except AuthConfigError as exc:  # fail closed: nobody gets in while the secrets are wrong
        st.error(f"Sign-in is misconfigured: {exc}", icon=":material/lock:")
        st.stop()
    headers = st.context.headers  # the WebSocket's request; none at all in AppTest
    if problem := host_problem(settings, ",".join(headers.get_all("Host")) if headers else None):
        st.error(problem, icon=":material/block:")
        st.stop()
    try:
        who = settings.viewer(st.user.to_dict())
    except AuthConfigError as exc:
        st.error(f"Sign-in is misconfigured: {exc}", icon=":material/lock:")
        st.stop()
    if who is None:
        sign_in_screen(settings)
        st.stop()
    return who


def sign_in_screen(settings: AuthSettings) -> None:
    st.title("CXR Review")
    st.error(DISCLAIMER, icon=":material/warning:")
    st.markdown("Sign in with your organisation's account. Your decisions are recorded under "
                "the identity you sign in with.")
    for provider in settings.providers:
        label = "Sign in" if provider is None else f"Sign in with {provider}"
        if st.button(label, type="primary", key=f"sign_in_{provider or 'default'}",
                     icon=":material/login:"):
            st.login(provider)


def local_mode_notice() -> None:
    """The home page's line on who can reach the app when nobody signs in."""
    address, host = st.get_option("server.address"), st.context.headers.get("Host")
    if served_locally(address, host):
        st.info("**Single-user local mode**: no sign-in, and the app answers on this machine "
                f"only ({address}). To share it with a team, configure sign-in (README: "
                "*Sign-in, roles and deploying for a team*).", icon=":material/person:")
    else:
        where = f"bound to {address or 'every interface'}, reached as {host or '?'}"
        st.error(f"**Single-user local mode on a network** ({where}): anyone who reaches it "
                 "can record decisions under any name and launch jobs. Serve it on 127.0.0.1 "
                 "only, or configure sign-in (README: *Sign-in, roles and deploying for a team*).",
                 icon=":material/lock_open:")


def signed_in(who: Viewer, key: str) -> None:
    """Who is signed in, their role, and a Sign out button (it ends the session)."""
    role = "trainer" if who.can_train else "reviewer"
    st.markdown(f"Signed in as {plain.code(who.identity)} ({role})")
    if st.button("Sign out", key=key, icon=":material/logout:"):
        st.logout()


def read_only(action: str) -> str:
    """Why a signed-in reviewer sees no button for `action`."""
    return (f"Read-only: only users with the trainer role may {action} "
            f"({auth_settings().role_rule}). You can watch runs and their progress.")


def sidebar(r: Roots, who: Viewer) -> None:
    with st.sidebar:
        st.warning(DISCLAIMER, icon=":material/warning:")
        if not who.local:
            signed_in(who, key="sign_out")
        with st.expander("Folders", expanded=False):
            st.caption(f"runs: {plain.code(r.runs)}  \ndata: {plain.code(r.data)}  \n"
                       f"worklist: {plain.code(mask(r.worklist))}  \n"
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
    st.progress(r.fraction, text=f"**{plain.md(r.name)}** ({plain.md(r.model)}) — "
                                 f"{plain.md(progress_line(r))}")


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


def pick_queue(wl, runs, key: str):
    """The queue selector the Triage and Audit pages share (a triage.Queue: one model's
    readings, so a film appears once; the best fusion run's by default). A worklist without
    cases stops the page with a message."""
    from cxr.dashboard import triage
    queues = {q.checkpoint_hash: q for q in triage.queues(wl, runs)}
    if not queues:
        st.info("The worklist has no case yet.")
        st.stop()
    default = triage.default_queue(list(queues.values()))
    choice = st.selectbox("Queue (one model's readings)", list(queues),
                          index=list(queues).index(default.checkpoint_hash), key=key,
                          format_func=lambda h: queues[h].label,
                          help="each model's predictions are a queue of their own; default: the "
                               "fusion run with the best validation AUC")
    return queues[choice]
