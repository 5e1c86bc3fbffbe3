"""Train: launch `cxr train` in the background and watch any run live from its files.

The job is a detached process (cxr/dashboard/jobs.py): it keeps going when the page reloads or
the browser closes; its progress comes from RUN_DIR/progress.json and history.csv."""
from __future__ import annotations

import streamlit as st

import app_ui
from cxr.dashboard import charts, jobs
from cxr.dashboard.runs import format_eta, list_runs, run_info, run_to_watch, runs_table
from cxr.dashboard.state import find_datasets
from cxr.dashboard.status import overview
from cxr.rundir import RunDir
from cxr.models import MODELS, list_models

SIZES = (32, 48, 64, 96, 128, 160, 192, 224, 256, 320, 384, 448, 512)

who = app_ui.viewer()  # signed in (or local mode), else only the sign-in screen
r = app_ui.roots()
st.title("Train")
app_ui.demo_banner(overview(r).demo)

# -- launch ------------------------------------------------------------------------------------
datasets = [str(d) for d in find_datasets(r.data)]
launched = "launched" in st.session_state
if not who.can_train:
    st.info(app_ui.read_only("launch, stop or resume training"), icon=":material/visibility:")
with st.expander("Launch a training run" + ("" if who.can_train else " (trainers only)"),
                 expanded=who.can_train and (not datasets or not launched)):
    with st.form("launch"):
        c1, c2, c3 = st.columns(3)
        found = ("Found: " + ", ".join(datasets)) if datasets else f"None found under {r.data}."
        data_dir = c1.text_input("Dataset folder", value=datasets[0] if datasets else "",
                                 key="t_data", help="ChestX-ray14 layout (Data_Entry_2017.csv, "
                                 f"images*/). {found}")
        model = c2.selectbox("Model", list(MODELS), index=list(MODELS).index("fusion"),
                             key="t_model", help="\n".join(
                                 f"- `{n}`: {m.description}" for n, m in MODELS.items()))
        name = c3.text_input("Run name", placeholder="default: MODEL-YYYYmmdd-HHMMSS",
                             key="t_name", help=f"a new folder under {r.runs}")
        c1, c2, c3, c4 = st.columns(4)
        size = c1.select_slider("Image size (px)", SIZES, value=224, key="t_size")
        epochs = c2.number_input("Epochs (per phase)", 1, 500, 25, key="t_epochs")
        batch = c3.number_input("Batch size", 1, 1024, 32, key="t_batch")
        loss = c4.selectbox("Loss", ("focal", "bce", "weighted_bce"), key="t_loss")
        c1, c2, c3 = st.columns(3)
        split = c1.selectbox("Split strategy", ("patient", "official"), key="t_split",
                             help="patient: iterative stratification by patient (70/10/20); "
                             "official: NIH's train_val / test lists")
        pretrained = c2.checkbox("ImageNet-pretrained backbone (timm hub)", value=False,
                                 key="t_pretrained",
                                 help="needs the model hub or its cache; otherwise give weights. "
                                 f"None exist for {', '.join(list_models(pretrained=False))}.")
        weights = c3.text_input("Local weights file (optional)", key="t_weights",
                                help="a timm checkpoint; fusion, fusion_xattn: {densenet121: PATH, "
                                "efficientnet_b3: PATH}")
        c1, c2, c3 = st.columns(3)
        max_steps = c1.number_input("Max steps per epoch (0: all)", 0, 1_000_000, 0,
                                    key="t_steps")
        max_minutes = c2.number_input("Time budget, minutes (0: none)", 0.0, 10_000.0, 0.0,
                                      key="t_minutes")
        device = c3.selectbox("Device", ("auto", "cpu", "cuda", "mps"), key="t_device")
        extra = st.text_area("More settings (key=value per line)", key="t_extra",
                             placeholder="lr_head=3e-4\n"
                             "patience=3", help="any TrainConfig field, as `cxr train --set`")
        submitted = st.form_submit_button("Launch", type="primary", disabled=not who.can_train)

    if submitted and who.can_train:
        settings = {"image_size": size, "epochs": int(epochs), "batch_size": int(batch),
                    "loss": loss, "split_strategy": split, "pretrained": pretrained,
                    "weights": weights.strip() or None, "device": device,
                    "max_steps_per_epoch": int(max_steps) or None,
                    "max_minutes": float(max_minutes) or None}
        try:
            run_name, pid = jobs.launch_train(r.runs, data_dir, model, name, settings, extra)
        except (jobs.JobError, ValueError, FileNotFoundError) as exc:
            st.error(str(exc))
        else:
            st.session_state["launched"] = run_name
            st.session_state["watch"] = run_name
            st.success(f"Launched `{run_name}` (pid {pid}). It keeps running if you close "
                       "this page.")

# -- monitor -----------------------------------------------------------------------------------
runs = list_runs(r.runs)
if not runs:
    st.info(f"No runs under `{r.runs}` yet.")
    st.stop()
names = [run.name for run in runs]
if st.session_state.get("watch") not in names:
    st.session_state["watch"] = run_to_watch(runs).name
st.subheader("Monitor")
watch = st.selectbox("Run", names, key="watch")
run_dir = next(run.path for run in runs if run.name == watch)
was_active = run_info(run_dir, r.runs).active


# Refreshes itself every 2 s while the run is active; when it ends, one full rerun updates the
# runs table and drops the timer.
@st.fragment(run_every=2 if was_active else None)
def monitor():
    info = run_info(run_dir, r.runs)
    if info.active != was_active:
        st.rerun()
    st.markdown(f"**{info.name}** · model `{info.model or '?'}` · status **{info.status}**")
    text = app_ui.progress_line(info)
    if info.status == "running" and info.eta_s is not None:
        text += f" (at most {format_eta(info.eta_s)} left)"
    st.progress(info.fraction, text=text)
    if info.progress.get("message"):
        st.caption(str(info.progress["message"]))
    if info.status in ("failed", "died"):
        st.error(f"Run {info.status}: {info.error or 'no error recorded'}")
    elif info.status == "stopped":
        st.warning("Stopped on request (last.pt kept; `cxr train --resume` continues it).")
    elif info.status == "finished":
        st.success(f"Finished. Best val macro AUC: "
                   f"{info.best_val_auc:.4f}" if info.best_val_auc is not None else "Finished.")
    if who.can_train and info.active:  # a reviewer's view is read-only: no Stop, no Resume
        if jobs.stop_requested(run_dir):
            st.info("Stop requested; the trainer stops after its current step.")
        elif st.button("Stop this run", key=f"stop-{info.name}"):
            jobs.request_stop(run_dir)
            st.info("Stop requested; the trainer stops after its current step.")
    elif who.can_train and info.resumable:
        if st.button("Resume from last.pt", key=f"resume-{info.name}"):
            try:
                pid = jobs.launch("train", jobs.resume_args(run_dir), run_dir)
            except jobs.JobError as exc:
                st.error(str(exc))
            else:
                st.toast(f"Resuming {info.name} (pid {pid})")
                st.rerun()  # the whole page: the monitor starts refreshing again
    history = RunDir(run_dir).read_history()
    if not history.empty:
        loss, auc = charts.progress_curves(history)
        c1, c2 = st.columns(2)
        c1.plotly_chart(loss, key=f"loss-{info.name}")
        c2.plotly_chart(auc, key=f"auc-{info.name}")
    else:
        st.caption("Curves appear after the first epoch.")
    log = jobs.train_log_tail(run_dir, 20)
    if log:
        with st.expander("Log (last lines)"):
            st.code(log, language=None)


monitor()

# -- all runs ----------------------------------------------------------------------------------
st.subheader("All runs")
st.dataframe(runs_table(runs), hide_index=True, width="stretch", column_config={
    "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0,
                                                format="percent"),
    "best val AUC": st.column_config.NumberColumn(format="%.4f"),
    "updated": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
})
