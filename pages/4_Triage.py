"""Triage: the review worklist (cxr.worklist: SQLite, or a team's PostgreSQL), one model's queue
at a time (the best fusion run's by default), in a queue order (cxr/dashboard/orders.py: urgent
first by default, most uncertain first, or the likely-negative list), each case with the reason
it is where it is, and the validation sensitivity and specificity (95% CI) of the operating
point its calls were made at (cxr/dashboard/points.py); filter by finding, call, OOD flag,
status and uncertainty. The Sort by box applies with the "most uncertain first" order (its
default sort is that order); the other two orders have their own and the box is disabled while
one is chosen. Select a case to see its film, Grad-CAM, probabilities and calls (a case pulled
from a PACS: its study date, whether its results and decision were sent back and when, and a
link to the study in the site's viewer from the CXR_VIEWER_URL template), then record a
decision (kept with history). The selected case is an id in session state, never a row number;
each case's form has keys of its own and records what it was drawn for (a decision on a stale
view is refused); opening a case claims it (others see it read-only). Names and notes others
typed are plain text (cxr/dashboard/plain.py); films are read only under the image roots. A
database the page cannot use is a message at the top, not a traceback.
Logic: cxr/dashboard/triage.py."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

import app_ui
from cxr.dashboard import analysis, charts, orders, plain, triage
from cxr.dashboard.points import interval_columns, point_caption
from cxr.dashboard.runs import list_runs
from cxr.dashboard.status import overview
from cxr.data.images import ImageLoadError
from cxr.labels import FINDINGS
from cxr.readout import ReadoutError
from cxr.triage_order import DEFAULT_URGENT
from cxr.worklist import (DECISIONS, STATUSES, CaseChanged, SchemaMismatch, Worklist,
                          WorklistUnavailable, mask)

DECISION_LABELS = {"agree": "Agree", "disagree": "Disagree", "second_read": "Needs second read"}

who = app_ui.viewer()  # signed in (or local mode), else only the sign-in screen
r = app_ui.roots()
ss = st.session_state
st.title("Triage")
problem = st.container()  # a worklist the page cannot use: the message goes here, on top
IMAGE_ROOTS = tuple(str(p) for p in triage.image_roots(r.data))


@st.cache_data(max_entries=16, show_spinner="Loading the film…")
def film(path: str, roots: tuple[str, ...]):
    """Only through load_image, only under the image roots (triage.load_film)."""
    return triage.load_film(path, [Path(p) for p in roots]).pixels


def queue_readout(queue, runs):
    """(the readout of the queue's checkpoint or None, the line saying which is in force). A
    readout fitted for another checkpoint is refused with a message, never used silently."""
    ckpt = triage.checkpoint_for(queue.checkpoint_hash, runs)
    if ckpt is None:
        return None, ("The checkpoint of this queue is not among the runs, so its readout "
                      "cannot be read here; the calls are the ones imported with the cases.")
    try:
        return (readout := app_ui.readout_for(ckpt)[0]), orders.readout_in_force(readout)
    except ReadoutError as exc:
        st.error(f"Cannot use this checkpoint's readout: {plain.md(exc)}")
        return None, "No readout in force (refused, above)."


def page() -> None:
    for key, value in ss.pop("triage_kept", {}).items():  # typed before the database went away
        ss[key] = value
    try:
        wl = Worklist(r.worklist, create=False)  # reading writes nothing
    except FileNotFoundError:
        st.info(f"No worklist at {plain.code(mask(r.worklist))} yet. The demo fills it with its "
                "test-split predictions after evaluation; or run `cxr worklist import "
                "PREDICTIONS.csv --model M --checkpoint RUN/best.pt --db "
                f"{plain.md(mask(r.worklist))}`.")
        app_ui.demo_banner(overview(r).demo)
        st.stop()
    runs = list_runs(r.runs)
    # -- the queue: one model's readings, so a film appears once -----------------------------------
    queue = app_ui.pick_queue(wl, runs, key="f_queue")
    readout, readout_note = queue_readout(queue, runs)

    # -- the queue order (the first choice is the default) -----------------------------------------
    c1, c2 = st.columns([2, 3])
    order_choices = [orders.DEFAULT_ORDER, *(o for o in orders.ORDER_LABELS
                                              if o != orders.DEFAULT_ORDER)]
    order = c1.selectbox("Queue order", order_choices, key="f_order",
                         format_func=orders.ORDER_LABELS.get,
                         help="urgent first: urgent positive calls, then out-of-distribution "
                              "and uncertain cases, then other positive calls, then the rest")
    urgent = c2.multiselect("Urgent findings", FINDINGS, default=list(DEFAULT_URGENT),
                            key="f_urgent", disabled=order != "urgent",
                            help="a positive call for one of these puts a case first")

    # -- filters -----------------------------------------------------------------------------------
    with st.container(border=True):
        c1, c2, c3, c4, c5, c6, c7 = st.columns([2, 1, 2, 2, 2, 2, 2])
        finding = c1.selectbox("Finding", [triage.ANY, *FINDINGS], key="f_finding")
        min_prob = c2.number_input("min P", 0.0, 1.0, 0.5, 0.05, key="f_min_prob",
                                   disabled=finding == triage.ANY)
        call = c3.selectbox("Call", triage.CALL_CHOICES, key="f_call",
                            help="the call of the chosen finding, or of any finding ('positive' "
                                 "with finding 'any': any positive call)")
        ood = c4.selectbox("Out of distribution", list(triage.OOD_CHOICES), key="f_ood")
        status = c5.selectbox("Status", [triage.ANY, *STATUSES], key="f_status")
        top = triage.MAX_UNCERTAINTY
        uncertainty = c6.slider("Uncertainty (image score)", 0.0, top, (0.0, top), 0.01,
                                key="f_unc",
                                help="each case's score under its uncertainty rule")
        own = order != "uncertain"  # urgent, likely-negative: an order of their own
        sort = c7.selectbox("Sort by", list(triage.SORTS), key="f_sort", disabled=own,
                            help="with the 'most uncertain first' order only; the other orders "
                                 "sort the queue their own way")
        ascending = c7.toggle("ascending", key="f_asc", disabled=own)

    cases = triage.find_cases(wl, finding, min_prob, status, uncertainty,
                              triage.DEFAULT_SORT if own else sort, ascending and not own,
                              queue=queue.checkpoint_hash, call=call, ood=ood)
    cases, order_problem = orders.page_queue(cases, order, readout, tuple(urgent))
    st.caption(plain.md(orders.sort_caption(order, sort, ascending, triage.DEFAULT_SORT,
                                            readout, tuple(urgent))))
    st.caption(plain.md(readout_note))
    for point in triage.queue_points(queue.operating_point, readout):  # the calls' points
        st.caption(plain.md(point_caption(readout, point)))
        with st.expander(f"Validation sensitivity and specificity per finding at the "
                         f"{plain.md(point)} operating point (95% CI)"):
            st.dataframe(pd.DataFrame({"finding": list(FINDINGS),
                                       **interval_columns(readout, point)}), hide_index=True)
    if order_problem:
        st.warning(plain.md(order_problem))
    calls_text = (f"Calls at the {plain.md(queue.operating_point)} operating point (chosen on "
                  "validation)."
                  if queue.operating_point else
                  "This queue came without a readout: no calls and no out-of-distribution flags "
                  "(run `cxr calibrate` on its checkpoint, evaluate or predict again, and import).")
    st.caption(f"{len(cases)} case(s) shown; {queue.pending} pending in this queue, "
               f"{wl.counts()['pending']} in the worklist. {calls_text} "
               + triage.rules_caption(cases))  # rule names checked by cxr.uncertainty

    # -- the selection: a case id kept in session state (a new queue starts at its first case) -----
    ids = [int(i) for i in cases["id"]]
    if ss.get("triage_queue") != queue.checkpoint_hash:
        ss["triage_queue"] = queue.checkpoint_hash
        ss.pop("triage_case", None)
    pick = triage.pick_case(ids, ss.get("triage_case"), saved=ss.pop("triage_saved", None))
    if cases.empty:
        if not order_problem:
            st.info("No case matches these filters.")
        if pick.case_id is None:
            st.stop()
    else:
        key = triage.table_key(ids)  # a new list of cases is a new table, selected afresh
        event = st.dataframe(
            triage.case_table(cases), hide_index=True, width="stretch", height=360, key=key,
            on_select="rerun", selection_mode="single-row",
            selection_default={"selection": {"rows": [ids.index(pick.case_id)] if pick.listed
                                                      else []}},
            column_config={
                "id": st.column_config.NumberColumn("case", width="small"),
                "reason": st.column_config.TextColumn(
                    "reason", help="why the case is where it is in this queue order"),
                "OOD": st.column_config.TextColumn(
                    "OOD", help="out of distribution: the film is unlike the films the model was "
                    "trained on, and its numbers are not to be trusted"),
                "OOD score": st.column_config.NumberColumn("OOD score", format="%.2f"),
                "uncertainty": st.column_config.NumberColumn(
                    "uncertainty", format="%.3f", help="the image score under the case's rule: "
                    "mean = mean MC-dropout std over the findings (the report's), any = the "
                    "largest"),
                "top P": st.column_config.ProgressColumn("top P", min_value=0.0, max_value=1.0,
                                                         format="%.2f"),
                **{f: st.column_config.ProgressColumn(f, min_value=0.0, max_value=1.0,
                                                      format="%.2f") for f in FINDINGS}})
        rows = list(event.selection.rows) if event is not None else []
        clicked = triage.clicked_case(ids, key, rows, ss.get("triage_table"))
        ss["triage_table"] = (key, rows)
        if clicked is not None:
            pick = triage.pick_case(ids, pick.case_id, clicked=clicked)
    case_id = ss["triage_case"] = pick.case_id
    if pick.listed:
        case = cases.loc[cases["id"] == case_id].iloc[0]
    else:  # it left the list (decided by someone else, filters changed): say so, never swap it
        case = triage.case_by_id(wl, case_id, queue.checkpoint_hash)
        st.warning(plain.md(triage.left_list_note(case, case_id)))
        if case is None:
            st.stop()

    # -- the case ----------------------------------------------------------------------------------
    st.subheader(f"Case {case_id}: {plain.md(case['image'])}")
    st.caption(f"model {plain.md(case['model'])} · status **{case['status']}** · uncertainty "
               f"{case['uncertainty']:.3f} (rule {plain.md(case['uncertainty_rule'])})"
               if case["uncertainty"] == case["uncertainty"]
               else f"model {plain.md(case['model'])} · status **{case['status']}**")
    pacs = triage.pacs_info(case, triage.viewer_template())
    if pacs is not None:  # pulled from a PACS: UIDs and dates only (the worklist has no patient)
        st.caption(plain.md(". ".join(pacs.lines) + "."))
        if pacs.link:
            st.link_button("Open the study in the viewer", pacs.link,
                           icon=":material/open_in_new:")
        if pacs.link_problem:
            st.warning(plain.md(pacs.link_problem))
    mean, std = triage.case_probabilities(case)
    if case["ood"] == 1:  # before the case's numbers, as on the Predict page
        st.error(f"**Out of distribution.** This film is unlike the films this model was trained "
                 f"on (OOD score {case['ood_score']:.2f}): its numbers are not to be trusted.")
    calls = triage.case_calls(case)


    left, right = st.columns([2, 3])
    with right:
        st.plotly_chart(charts.probability_bars(list(FINDINGS), mean, std), key="case_bars")
        if calls is not None:
            called = {c: [f for f, x in zip(FINDINGS, calls) if x == c] for c in ("positive",
                                                                                  "uncertain")}
            st.caption(f"Calls at the {plain.md(case['operating_point'])} operating point: "
                       "positive "
                       f"{', '.join(called['positive']) or 'none'}; uncertain "
                       f"{', '.join(called['uncertain']) or 'none'}; the others negative or n/a.")
    with left:
        path = case["path"] if isinstance(case["path"], str) else None
        pixels = None
        try:
            pixels = analysis.display_film(film(path, IMAGE_ROOTS))
        except triage.FilmUnavailable as exc:
            st.info(f"Film not available here: {plain.md(exc)}.")
        except ImageLoadError as exc:
            st.error(f"Cannot read the film: {plain.md(exc)}")
        if pixels is not None:
            ckpt = triage.checkpoint_for(case["checkpoint_hash"], runs)
            show = st.selectbox("Grad-CAM for", ["(film only)", *FINDINGS],
                                index=1 + int(mean.argmax()) if ckpt else 0, key=f"cam_{case_id}")
            if show != "(film only)" and ckpt:
                device = analysis.device_name()
                model, _ = app_ui.model_for(ckpt, device)
                with app_ui.model_lock(ckpt, device):
                    heat = analysis.explain(model, film(path, IMAGE_ROOTS), [show])[show]
                st.image(analysis.overlay(pixels, heat, 0.4), width="stretch",
                         caption=f"Grad-CAM: {show}")
            else:
                if show != "(film only)":
                    st.caption("The checkpoint that made these predictions is not among the runs; "
                               "showing the film only.")
                st.image(pixels, clamp=True, width="stretch")

    # -- decision ----------------------------------------------------------------------------------
    if not who.local:
        app_ui.signed_in(who, key="sign_out_triage")
    if who.local:  # single-user local mode: the reviewer says who they are (kept between cases)
        reviewer = st.text_input("Reviewer", key="d_reviewer")
    else:  # signed in: always the signed-in identity, never a typed name
        reviewer = who.identity
    # Opening a case claims it (renewed on every rerun while it stays open, released when the
    # reviewer moves on); someone else's live claim makes the form read-only.
    try:
        claim = triage.claim_case(wl, case_id, reviewer)
        held = (case_id, reviewer) if claim is not None and claim.mine else None
        if ss.get("triage_claim") not in (None, held):
            triage.release_claim(wl, *ss["triage_claim"])
        ss["triage_claim"] = held
    except triage.ClaimFailed as exc:  # a full disk: reading and the form still work
        claim, failed = None, str(exc)
    else:
        failed = None
    busy = triage.claim_note(claim)
    if busy:
        st.warning(plain.md(busy), icon=":material/lock:")
    elif failed:
        st.caption(plain.md(failed))
    elif claim is None:
        st.caption("Type your name to claim this case while you review it.")
    # The form of this case (keys hold its id and the number of decisions saved in this session,
    # so every case's form starts empty); `drawn`: what the case was when this form was first
    # drawn, kept over reruns (a filter, a Grad-CAM choice) so that a decision another reviewer
    # made meanwhile is still caught; a form drawn only in this run was submitted for no case.
    gen = ss.get("triage_gen", 0)
    fresh = ss.get("triage_drawn_for") != (case_id, gen)
    if fresh:
        ss["triage_drawn"] = triage.Drawn(case_id, int(case["n_decisions"]))
        ss["triage_drawn_for"] = (case_id, gen)
    drawn = None if fresh else ss["triage_drawn"]
    key_of = lambda field: triage.form_key(field, case_id, gen)  # noqa: E731
    with st.form(f"decision_{case_id}_{gen}", clear_on_submit=False):
        st.markdown("**Your review**")
        c1, c2 = st.columns([1, 2])
        decision = c1.radio("Decision", DECISIONS, format_func=DECISION_LABELS.get,
                            key=key_of("decision"), disabled=bool(busy))
        corrected = c2.multiselect("Findings present (if you disagree)", FINDINGS,
                                   key=key_of("corrected"), disabled=bool(busy),
                                   help="leave empty with 'Disagree' to mean No Finding")
        note = st.text_area("Note", key=key_of("note"), disabled=bool(busy))
        if not who.local:
            st.caption(f"Recorded as {plain.code(who.identity)}, the signed-in identity.")
        submitted = st.form_submit_button("Record decision", type="primary",
                                          disabled=bool(busy))
    if submitted:
        try:
            triage.save_decision(wl, drawn, case_id, decision, reviewer, note, corrected)
        except triage.SaveFailed as exc:  # full disk, read-only database: the form keeps its input
            st.error(plain.md(exc), icon=":material/error:")
        except CaseChanged as exc:  # decided meanwhile: seen now, so the next submit may stand
            ss["triage_drawn"] = triage.Drawn(case_id, int(case["n_decisions"]))
            st.error(plain.md(exc))
        except ValueError as exc:  # bad input (no reviewer name, ...)
            st.error(plain.md(exc))
        else:
            ss["recorded"] = (f"Recorded **{DECISION_LABELS[decision]}** for case {case_id} by "
                              f"{plain.md(reviewer.strip())}.")
            ss["triage_saved"] = (case_id, ids)  # the next case, if this one leaves the list
            ss["triage_gen"] = gen + 1           # ... and every form starts empty again
            triage.release_claim(wl, case_id, reviewer)  # decided: free for a second reader
            ss["triage_claim"] = None
            st.rerun()
    if "recorded" in ss:
        st.success(ss.pop("recorded"))

    history = wl.history(case_id)
    st.markdown(f"**History of case {case_id}** ({len(history)} decision(s))")
    if history.empty:
        st.caption("No decision yet.")
    else:  # st.table renders its cells as Markdown: every cell is escaped (triage.history_table)
        st.table(triage.history_table(history))

    # -- export (the CSV is made when a button is clicked, not on every rerun) ---------------------
    c1, c2 = st.columns(2)
    c1.download_button("Export cases with status (CSV)",
                       lambda: wl.export_table().to_csv(index=False).encode(), "worklist_cases.csv",
                       "text/csv", key="export_cases")
    c2.download_button("Export every decision (CSV)",
                       lambda: wl.export_table(history=True).to_csv(index=False).encode(),
                       "worklist_decisions.csv", "text/csv", key="export_history")


try:
    page()
except (WorklistUnavailable, SchemaMismatch, OSError) as exc:  # the server went away, an old
    problem.error(plain.md(triage.worklist_problem(exc)), icon=":material/database:")  # schema
    ss["triage_kept"] = triage.kept_inputs(ss)  # the form and filters, for when it is back
