"""Train: launch `cxr train` in the background and watch any run live from its files.

The launch form starts from a preset (cxr/dashboard/presets.py: the report's Table 1 and text,
or the CPU demo, the default without CUDA) and shows what the run will cost before it starts
(cxr/dashboard/cost.py: steps per epoch, time per epoch from a short measured warm-up); a long
run needs a tick to launch. The job is a detached process (cxr/dashboard/jobs.py): it keeps
going when the page reloads or the browser closes; its progress comes from
RUN_DIR/progress.json and history.csv."""
from __future__ import annotations

import streamlit as st

import app_ui
from cxr.dashboard import charts, cost, jobs, plain, presets
from cxr.dashboard.runs import format_eta, list_runs, run_info, run_to_watch, runs_table
from cxr.dashboard.state import find_datasets
from cxr.dashboard.status import overview
from cxr.rundir import RunDir, check_run_name
from cxr.models import MODELS, list_models

SIZES = (32, 48, 64, 96, 128, 160, 192, 224, 256, 320, 384, 448, 512)
# the launch form's widgets, by the TrainConfig key they set (presets.FORM_FIELDS)
WIDGETS = {"model": "t_model", "image_size": "t_size", "epochs": "t_epochs",
           "batch_size": "t_batch", "loss": "t_loss", "split_strategy": "t_split",
           "pretrained": "t_pretrained", "weights": "t_weights", "max_steps_per_epoch": "t_steps",
           "max_minutes": "t_minutes", "device": "t_device"}


def fill_form() -> None:
    """Put the chosen preset's values in the form's widgets (before they are drawn)."""
    form = presets.form_values(presets.PRESETS[st.session_state["t_preset"]],
                               model=st.session_state.get("t_model", "fusion"))
    for key, value in form.fields.items():
        st.session_state[WIDGETS[key]] = value
    st.session_state["t_extra"] = form.extra


who = app_ui.viewer()  # signed in (or local mode), else only the sign-in screen
r = app_ui.roots()
st.title("Train")
app_ui.demo_banner(overview(r).demo)

# -- launch ------------------------------------------------------------------------------------
datasets = [str(d) for d in find_datasets(r.data)]
launched = "launched" in st.session_state
if not who.can_train:
    st.info(app_ui.read_only("launch, stop or resume training"), icon=":material/visibility:")
if any(k not in st.session_state for k in ("t_preset", *WIDGETS.values(), "t_extra")):
    st.session_state.setdefault("t_preset", presets.default_preset())  # CUDA: the report's
    fill_form()
with st.expander("Launch a training run" + ("" if who.can_train else " (trainers only)"),
                 expanded=who.can_train and (not datasets or not launched)):
    # No st.form: the cost below follows every field as it changes.
    preset = st.radio("Preset", list(presets.PRESETS), key="t_preset", horizontal=True,
                      on_change=fill_form, help="fills the fields below; you can still change "
                      "them. The CPU demo is the default without a GPU.")
    st.caption(presets.PRESETS[preset].summary())
    c1, c2, c3 = st.columns(3)
    found = ("Found: " + ", ".join(datasets)) if datasets else f"None found under {r.data}."
    data_dir = c1.text_input("Dataset folder", value=datasets[0] if datasets else "", key="t_data",
                             help=f"ChestX-ray14 layout (Data_Entry_2017.csv, images*/). {found}")
    model = c2.selectbox("Model", list(MODELS), key="t_model", help="\n".join(
        f"- `{n}`: {m.description}" for n, m in MODELS.items()))
    name = c3.text_input("Run name", placeholder="default: MODEL-YYYYmmdd-HHMMSS",
                         key="t_name", help=f"a new folder under {r.runs}: one folder name "
                         "(letters, digits and . _ + -)")
    if name.strip():
        try:
            check_run_name(name.strip())
        except ValueError as exc:
            c3.error(str(exc))
    c1, c2, c3, c4 = st.columns(4)
    c1.select_slider("Image size (px)", sorted({*SIZES, st.session_state["t_size"]}),
                     key="t_size")
    c2.number_input("Epochs (per phase)", 1, 500, key="t_epochs")
    c3.number_input("Batch size", 1, 1024, key="t_batch")
    c4.selectbox("Loss", ("focal", "bce", "weighted_bce"), key="t_loss")
    c1, c2, c3 = st.columns(3)
    c1.selectbox("Split strategy", ("patient", "official"), key="t_split",
                 help="patient: iterative stratification by patient (70/10/20); "
                 "official: NIH's train_val / test lists")
    c2.checkbox("ImageNet-pretrained backbone (timm hub)", key="t_pretrained",
                help="needs the model hub or its cache; otherwise give weights. "
                f"None exist for {', '.join(list_models(pretrained=False))}.")
    c3.text_input("Local weights file (optional)", key="t_weights", help="a timm checkpoint; "
                  "fusion, fusion_xattn: {densenet121: PATH, efficientnet_b3: PATH}")
    c1, c2, c3 = st.columns(3)
    c1.number_input("Max steps per epoch (0: all)", 0, 1_000_000, key="t_steps")
    c2.number_input("Time budget, minutes (0: none)", 0.0, 10_000.0, key="t_minutes")
    c3.selectbox("Device", ("auto", "cpu", "cuda", "mps"), key="t_device")
    extra = st.text_area("More settings (key=value per line)", key="t_extra",
                         placeholder="lr_head=3e-4\n"
                         "patience=3", help="any TrainConfig field, as `cxr train --set`")
    settings = presets.settings_from_form(
        {key: st.session_state[widget] for key, widget in WIDGETS.items()})
    lines = [ln.strip() for ln in extra.splitlines() if ln.strip()]

    # -- what it will cost: steps per epoch now, time per epoch from a measured warm-up. For
    # trainers only: it reads the dataset folder typed above, so its answer would tell anyone
    # which paths exist on the server.
    st.markdown("**What this run will cost** (an estimate)")
    work = timing = measure_key = est = cfg = None
    if not who.can_train:
        st.caption("Cost estimates are for users with the trainer role.")
    else:
        try:
            cfg = jobs.train_config(data_dir.strip(), model, settings, lines)
            measure_key = cost.MeasureKey.of(cfg)
        except ValueError as exc:
            st.warning(f"No estimate for these settings: {plain.md(exc)}")
    if cfg is not None:
        try:
            if not data_dir.strip():
                raise FileNotFoundError("give a dataset folder")
            work = cost.workload(cfg)
            st.markdown(cost.describe_steps(work))
        except (FileNotFoundError, ValueError) as exc:
            st.caption(f"Steps per epoch need the dataset: {plain.md(exc)}")
        timing = cost.cached_timing(measure_key)
    time_box = st.container()  # drawn above the buttons, filled once a click is handled
    c1, c2 = st.columns(2)
    measure = c2.button("Estimate cost", key="t_estimate", disabled=measure_key is None or
                        not who.can_train, help="times a few training steps of this model "
                        "here (seconds on a CPU), once per model, size, batch, device and "
                        "precision")
    with time_box:
        if measure and measure_key is not None:
            try:
                with st.spinner("Timing a few training steps on this machine…"):
                    timing = cost.step_timing(measure_key)
            except ValueError as exc:
                st.error(str(exc))
        if timing is not None:
            est = cost.estimate(work, timing) if work is not None else None
            st.markdown(cost.describe_time(work, timing, est))
            st.caption(f"An estimate, measured on this machine: {timing.how()}. It counts the "
                       "model's steps only: loading and augmenting images, and other jobs on "
                       "this machine, add to it. The head phase (backbone frozen) counts a "
                       "forward pass a step, validation a forward pass per image.")
        elif measure_key is not None:
            st.caption("Time per epoch: not measured yet for this model, size, batch and "
                       "device. **Estimate cost** times a few steps here; Launch does it first.")
        long = est.warnings() if est is not None else []
        confirmed = True
        if long:
            st.error(f"**This is a long run on {timing.key.device}**: {'; '.join(long)}. On a "
                     "laptop or a CPU, choose the **CPU demo** preset, or a smaller image "
                     "size, model or number of epochs.", icon=":material/hourglass_top:")
            confirmed = st.checkbox("I have seen the estimate: launch anyway", key="t_confirm")
            if st.session_state.pop("t_refused", False):
                st.warning("Not launched: the estimate is long. Tick the box to launch anyway.")
    submitted = c1.button("Launch", type="primary", key="t_launch",
                          disabled=not who.can_train or not confirmed)

    if submitted and who.can_train:
        try:
            jobs.check_train_args(data_dir.strip(), model, settings, lines)
            if timing is None:  # never launch unmeasured: the estimate may be long
                with st.spinner("Timing a few training steps before the launch…"):
                    timing = cost.step_timing(measure_key or cost.MeasureKey.of(cfg))
                if cost.estimate(cost.workload(cfg), timing).warnings():
                    st.session_state["t_refused"] = True
                    st.rerun()  # draws the warning and its checkbox above
            run_name, pid = jobs.launch_train(r.runs, data_dir, model, name, settings, extra)
        except (jobs.JobError, ValueError, FileNotFoundError) as exc:
            st.error(str(exc))
        else:
            st.session_state["launched"] = run_name
            st.session_state["watch"] = run_name
            st.success(f"Launched {plain.code(run_name)} (pid {pid}). It keeps running if you "
                       "close "
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
    st.markdown(f"**{plain.md(info.name)}** · model {plain.code(info.model or '?')} · status "
                f"**{plain.md(info.status)}**")
    text = app_ui.progress_line(info)
    if info.status == "running" and info.eta_s is not None:
        text += f" (at most {format_eta(info.eta_s)} left)"
    st.progress(info.fraction, text=text)
    if info.progress.get("message"):
        st.caption(plain.md(info.progress["message"]))
    if info.status in ("failed", "died"):
        st.error(f"Run {info.status}: {plain.md(info.error or 'no error recorded')}")
    elif info.status == "stopped":
        st.warning("Stopped on request (last.pt kept; `cxr train --resume` continues it).")
    elif info.status == "finished":
        st.success(f"Finished. Best val macro AUC: "
                   f"{info.best_val_auc:.4f}" if info.best_val_auc is not None else "Finished.")
    if who.can_train and info.active:  # a reviewer's view is read-only: no Stop, no Resume
        if not jobs.stop_requested(run_dir) and st.button("Stop this run", key=f"stop-{info.name}"):
            jobs.request_stop(run_dir)
        if jobs.stop_requested(run_dir):
            st.info("Stop requested; the trainer stops after its current step.")
    elif who.can_train and info.resumable:
        if st.button("Resume from last.pt", key=f"resume-{info.name}"):
            try:
                pid = jobs.launch("train", jobs.resume_args(run_dir), run_dir)
            except jobs.JobError as exc:
                st.error(str(exc))
            else:
                st.toast(f"Resuming {plain.md(info.name)} (pid {pid})")
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
