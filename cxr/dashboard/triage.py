"""The Triage page's logic: the reviewer's queue (one model's readings), its filters as a
worklist query, the case table, a case's numbers, the run checkpoint that made a case (found by
its sha256) and a reviewer's decision.

    wl, runs = Worklist(roots.worklist), list_runs(roots.runs)
    qs = queues(wl, runs)                      # one per checkpoint in the worklist
    queue = default_queue(qs)                  # the best fusion run's (highest val AUC)
    cases = find_cases(wl, queue=queue.checkpoint_hash, finding="Effusion", call="positive",
                       ood="out of distribution", status="pending", uncertainty=(0.1, 0.5))
    table = case_table(cases)                  # with each case's rule, calls and OOD mark
    rules_caption(cases)                       # 'uncertainty: each case's image score ...'
    ckpt = checkpoint_for(cases.iloc[0]["checkpoint_hash"], runs)

    key = table_key(ids)                       # the table widget's key: one per list of cases
    pick = pick_case(ids, selected=12)         # case 12 stays selected while it is listed
    film = load_film(case["path"], image_roots(roots.data))   # only under the image roots
    save_decision(wl, Drawn(12, 0), 12, "agree", "dr a", "", [])  # CaseChanged: 12 changed
    claim = claim_case(wl, 12, "dr a")         # renewed on every rerun; others read only

The selection is a case id, never a row number: the table is re-queried on every rerun (another
reviewer's decision, a filter) and its rows shift, so the page keeps the selected id in session
state, maps a click to the id of the row clicked in the table as it was drawn, and draws each
case's form under keys holding its id. A decision records the number of decisions the case had
when its form was drawn (`Drawn`), and the worklist refuses it (CaseChanged) if that changed.

One queue is one checkpoint's cases, so a film appears once in it, whereas the demo's worklist
as a whole holds every test film once per model.
"""
from __future__ import annotations

import errno
import functools
import hashlib
import os
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cxr.data.images import LoadedImage, check_frontal, load_image
from cxr.hashing import file_sha256
from cxr.labels import FINDINGS
from cxr.uncertainty import describe_rule
from cxr.worklist import CALL, PROB, STD, Worklist

ANY = "any"               # the finding, call, OOD and status choices that filter nothing
MAX_UNCERTAINTY = 0.5     # the uncertainty slider's top (a probability's std is at most 0.5)
CALL_CHOICES = (ANY, "positive", "uncertain", "negative", "n/a")  # cxr.readout.CALLS
OOD_CHOICES = {ANY: None, "out of distribution": True, "in distribution": False}
OOD_MARK = "⚠ OOD"        # how the case table marks an out-of-distribution film
# the first is the default: each case's image score under its uncertainty rule
SORTS = {"uncertainty (image score, by rule)": "uncertainty", "mean std": "mean_std",
         "max std": "max_std", "positive calls": "positive_calls", "OOD score": "ood_score",
         "image": "image", "newest": "created_at", **{f"P({f})": f"prob_{f}" for f in FINDINGS}}
DEFAULT_SORT = next(iter(SORTS))


@dataclass(frozen=True)
class Queue:
    """One checkpoint's cases: what a reviewer works through."""
    checkpoint_hash: str
    model: str                    # the name the cases were imported under
    cases: int
    pending: int
    operating_point: str | None   # where its calls were made (None: imported without readout)
    run: str | None = None        # the run whose best.pt made them (None: not among the runs)
    architecture: str | None = None  # that run's registry model
    val_auc: float | None = None     # that run's best validation macro AUC

    @property
    def label(self) -> str:
        where = self.run or f"checkpoint {self.checkpoint_hash[:12]} (not among the runs)"
        auc = f"val AUC {self.val_auc:.3f}" if self.val_auc is not None else "val AUC n/a"
        return f"{self.model} · {where} · {auc} · {self.cases} cases, {self.pending} pending"


def queues(wl: Worklist, runs) -> list[Queue]:
    """One queue per checkpoint in the worklist, with the run (RunInfo) that made it if any."""
    by_hash = runs_by_hash(runs)
    out = []
    for row in wl.sources().itertuples(index=False):
        run = by_hash.get(row.checkpoint_hash)
        out.append(Queue(row.checkpoint_hash, row.model, int(row.cases), int(row.pending),
                         row.operating_point if isinstance(row.operating_point, str) else None,
                         run.name if run else None, (run.model or None) if run else None,
                         run.best_val_auc if run else None))
    return out


def default_queue(qs: list[Queue]) -> Queue | None:
    """The best fusion run's queue: among the queues of `fusion` (the run's model, else the
    imported name) the one with the highest validation AUC; without any, the best of all.
    Ties and unknown AUCs: the larger queue, then the first imported."""
    fusion = [q for q in qs if (q.architecture or q.model) == "fusion"]
    pool = fusion or qs
    if not pool:
        return None
    return max(pool, key=lambda q: (q.val_auc if q.val_auc is not None else -1.0, q.cases))


def find_cases(wl: Worklist, finding: str = ANY, min_prob: float = 0.5, status: str = ANY,
               uncertainty: tuple[float, float] = (0.0, MAX_UNCERTAINTY),
               sort: str = DEFAULT_SORT, ascending: bool = False, queue: str | None = None,
               call: str = ANY, ood: str = ANY) -> pd.DataFrame:
    """The page's filters as a Worklist.cases query. 'any' and the slider's ends filter nothing,
    so cases without a std (external models) stay listed until the slider is moved. queue: a
    checkpoint hash (None: every queue). call: the call of `finding`, or of any finding when
    finding is 'any' ('positive' then means "any positive call"). ood: an OOD_CHOICES key."""
    lo, hi = uncertainty
    chosen = None if finding == ANY else finding
    return wl.cases(finding=chosen, min_prob=min_prob,
                    status=None if status == ANY else status,
                    min_uncertainty=lo if lo > 0 else None,
                    max_uncertainty=hi if hi < MAX_UNCERTAINTY else None,
                    sort=SORTS[sort], ascending=ascending, checkpoint_hash=queue,
                    call=None if call == ANY else call, call_finding=chosen,
                    ood=OOD_CHOICES[ood])


def case_table(cases: pd.DataFrame) -> pd.DataFrame:
    """One row per case: id, the reason it is where it is (a queue order's `reason` column,
    where the cases have one), image, the OOD mark, model, status, uncertainty (the image score)
    and its rule, the findings called positive (empty without a readout), the OOD score, the
    top finding and its P, the uncertain flag, the latest reviewer, who has it open now (a live
    claim), then P per finding."""
    probs = cases[PROB].to_numpy()
    table = cases[["id", "reason", "image"] if "reason" in cases else ["id", "image"]].copy()
    table["OOD"] = [OOD_MARK if flag == 1 else "" for flag in cases["ood"]]
    table[["model", "status", "uncertainty"]] = cases[["model", "status", "uncertainty"]]
    table["rule"] = cases["uncertainty_rule"].fillna("")
    table["positive calls"] = positive_calls(cases)
    table["OOD score"] = cases["ood_score"].astype(float)
    table["top finding"] = [FINDINGS[k] for k in probs.argmax(axis=1)]
    table["top P"] = probs.max(axis=1)
    table["uncertain"] = cases["uncertain"].astype(bool)
    table["reviewer"] = cases["reviewer"].fillna("")
    table["claimed by"] = (cases["claimed_by"].fillna("") if "claimed_by" in cases
                           else "")  # a live claim: someone has the case open
    table[list(FINDINGS)] = probs
    return table


def queue_points(operating_point: str | None, readout) -> list[str]:
    """The operating points a queue's calls were made at (Queue.operating_point: none, one, or
    several comma-separated) that the checkpoint's readout has: the page states each one's
    validation sensitivity and specificity."""
    if readout is None or not operating_point:
        return []
    return [p for p in operating_point.split(",") if p in readout.points]


def rules_caption(cases: pd.DataFrame) -> str:
    """What the uncertainty column means for these cases: the rule(s) their scores follow."""
    counts = cases["uncertainty_rule"].value_counts()
    if counts.empty:
        return "No case here has MC-dropout uncertainty (predictions without std)."
    parts = [f"{describe_rule(rule)}: {n} case(s)" for rule, n in counts.items()]
    mixed = " Scores of different rules are not comparable." if len(counts) > 1 else ""
    return ("Uncertainty is each case's image score under its rule: " + "; ".join(parts) + "."
            + mixed)


def positive_calls(cases: pd.DataFrame) -> list[str]:
    """Per case, the findings its readout called positive, comma-separated ('none'); '' for a
    case that came without a readout. On the call columns as one array, not row by row: the
    table is rebuilt on every rerun of the page, for the whole queue."""
    positive = cases[CALL].to_numpy() == "positive"
    names = np.asarray(FINDINGS)
    return [(", ".join(names[row]) or "none") if isinstance(point, str) else ""
            for row, point in zip(positive, cases["operating_point"])]


def case_calls(case: pd.Series) -> list[str] | None:
    """The 14 calls of a case in FINDINGS order, or None without a readout."""
    if not isinstance(case.get("operating_point"), str):
        return None
    return [str(case[f"call_{f}"]) for f in FINDINGS]


def runs_by_hash(runs) -> dict[str, object]:
    """sha256 of each run's best.pt -> the run (RunInfo); hashed once per file version."""
    out = {}
    for run in runs:
        try:
            stat = run.checkpoint.stat()
        except OSError:  # no best.pt (yet), or being replaced right now
            continue
        out.setdefault(_sha256(str(run.checkpoint), stat.st_mtime_ns, stat.st_size), run)
    return out


def case_probabilities(case: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) per finding, in FINDINGS order; std 0 where the predictions had none."""
    return case[PROB].to_numpy(dtype=float), np.nan_to_num(case[STD].to_numpy(dtype=float))


def checkpoint_for(checkpoint_hash: str, runs) -> Path | None:
    """The best.pt among `runs` (RunInfo) whose sha256 is the case's, or None: the predictions
    were made by a checkpoint that is not among the runs (elsewhere, or retrained since)."""
    run = runs_by_hash(runs).get(checkpoint_hash)
    return run.checkpoint if run is not None else None


@functools.lru_cache(maxsize=64)
def _sha256(path: str, mtime_ns: int, size: int) -> str:
    """Hashing a checkpoint reads all of it: once per file version (mtime and size are the key)."""
    return file_sha256(path)


def record_decision(wl: Worklist, case_id: int, decision: str, reviewer: str, note: str,
                    corrected: list[str], expected_decisions: int | None = None) -> int:
    """Record the form's decision. The ticked findings are kept when there are some, and with
    'disagree' always: 'disagree' with none ticked means No Finding. expected_decisions: see
    Worklist.record_decision (CaseChanged when the case has another number of decisions)."""
    keep = decision == "disagree" or bool(corrected)
    return wl.record_decision(case_id, decision, reviewer=reviewer, note=note,
                              corrected=list(corrected) if keep else None,
                              expected_decisions=expected_decisions)


# -- the selected case: an id, never a row number ----------------------------------------------
def table_key(ids) -> str:
    """The case table's widget key, one per list of cases (ids in order): Streamlit keeps a
    table's selection as row numbers under its key, so when the rows change the table becomes a
    new widget and its selection is drawn afresh from the selected case id."""
    digest = hashlib.sha256(",".join(str(int(i)) for i in ids).encode()).hexdigest()
    return f"cases_{digest[:16]}"


def clicked_case(ids, key: str, rows, last) -> int | None:
    """The case the reviewer clicked this rerun, or None. `rows`: the table's selected rows now;
    `last`: (key, rows) of the previous rerun. A click is a change of rows under the same key,
    so the rows refer to the very list `ids` that was drawn (the key is made from it)."""
    rows = list(rows or [])
    if not last or last[0] != key or list(last[1]) == rows or not rows:
        return None
    return int(ids[rows[0]]) if 0 <= rows[0] < len(ids) else None


@dataclass(frozen=True)
class Pick:
    case_id: int | None   # the case to show (None: no case)
    listed: bool          # it is in the table (False: shown, but it left the list)


def pick_case(ids, selected: int | None = None, clicked: int | None = None,
              saved: tuple[int, list[int]] | None = None) -> Pick:
    """Which case to show. A click wins; else the selected case while it is listed; a case just
    decided (`saved`: its id and the list it was decided in) that left the list gives way to
    the next one of that list still listed (else the first); with nothing selected yet, the
    first case. A selected case that left the list for another reason (someone else decided
    it, the filters changed) stays selected, unlisted: the page says so, and never silently
    shows another case instead."""
    ids = [int(i) for i in ids]
    if clicked is not None and clicked in ids:
        return Pick(int(clicked), True)
    if selected is None:
        return Pick(ids[0] if ids else None, bool(ids))
    if selected in ids:
        return Pick(int(selected), True)
    if saved is not None and saved[0] == selected:
        order = [int(i) for i in saved[1]]
        after = order[order.index(selected) + 1:] if selected in order else []
        nxt = next((i for i in after if i in ids), ids[0] if ids else None)
        return Pick(nxt, nxt is not None)
    return Pick(int(selected), False)


def case_by_id(wl: Worklist, case_id: int, queue: str | None = None) -> pd.Series | None:
    """A case (the columns of Worklist.cases) whatever the filters, or None if it is gone."""
    found = wl.cases(checkpoint_hash=queue, sort="created_at")
    found = found[found["id"] == int(case_id)]
    return None if found.empty else found.iloc[0]


def left_list_note(case: pd.Series | None, case_id: int) -> str:
    """Why the selected case is shown though the table does not list it (plain text)."""
    if case is None:
        return (f"Case {case_id} is no longer in the worklist. Choose a case in the table.")
    now = str(case["status"])
    by = f" by {case['reviewer']}" if isinstance(case.get("reviewer"), str) else ""
    return (f"Case {case_id} is no longer in this list (its status is now {now}{by}, or the "
            "filters changed). It stays open until you choose a case in the table.")


SIMULATED_MARK = "simulated (the demo's reviewer)"  # how the history marks such a decision


def history_table(history: pd.DataFrame) -> pd.DataFrame:
    """A case's decisions for st.table (which renders cells as Markdown): when, who, what,
    the corrected findings, the note and whether the demo's simulated reviewer made it, every
    cell escaped so it reads as typed."""
    from cxr.dashboard.plain import md
    shown = history[["created_at", "reviewer", "decision", "corrected", "note"]].copy()
    flags = history["simulated"] if "simulated" in history else pd.Series(False, history.index)
    shown["simulated"] = [SIMULATED_MARK if _flag(v) else "" for v in flags]
    return shown.fillna("").astype(str).map(md)


def _flag(value) -> bool:
    """A boolean column's cell (bool, 0/1, None or NaN) as a bool."""
    return bool(value) and value == value


# -- PACS cases: the study, what was sent back, the site's viewer ------------------------
VIEWER_URL_ENV = "CXR_VIEWER_URL"  # e.g. http://viewer/viewer?StudyInstanceUIDs={study}


@dataclass(frozen=True)
class PacsInfo:
    """What the page says about a case pulled from a PACS (plain text; UIDs and dates only,
    never a patient field: the worklist holds none)."""
    lines: tuple[str, ...]
    link: str | None          # the study in the site's viewer (None: no template, or no UID)
    link_problem: str | None  # the template is wrong: what to fix


def viewer_template(env: dict | None = None) -> str | None:
    """The site's viewer URL template (CXR_VIEWER_URL), or None."""
    value = str((os.environ if env is None else env).get(VIEWER_URL_ENV, "")).strip()
    return value or None


def pacs_info(case, template: str | None) -> PacsInfo | None:
    """For a case with a Study Instance UID: its study and date, whether the model's results
    (an SR) and the reviewer's decision were sent to the PACS and when, and the viewer link
    from `template` (cxr.pacs.viewer_link). None for a case that did not come from a PACS."""
    from cxr.pacs import viewer_link
    study = _text(case.get("study_uid"))
    if study is None:
        return None
    date = _text(case.get("study_date"))
    lines = [f"PACS study {study}, study date "
             + (_dicom_date(date) if date else "not recorded")]
    sent = _text(case.get("results_sent_at"))
    sr = _text(case.get("result_sr_uid"))
    lines.append(f"Results sent to the PACS {when_text(sent)}" + (f" (SR {sr})" if sr else "")
                 if sent else "Results not sent to the PACS")
    lines.append(_decision_sent(case))
    link, problem = None, None
    try:
        link = viewer_link(template, case)
    except ValueError as exc:
        problem = f"The viewer link cannot be made ({VIEWER_URL_ENV}): {exc}"
    if template is None:
        lines.append(f"Set {VIEWER_URL_ENV} to link to the study in the site's viewer")
    return PacsInfo(tuple(lines), link, problem)


def _decision_sent(case) -> str:
    sent, decided = _text(case.get("decision_sent_at")), _text(case.get("decided_at"))
    if decided is None:
        return "No decision yet to send"
    if sent is None:
        return "The reviewer's decision is not sent to the PACS (cxr pacs push-decisions)"
    text = f"The reviewer's decision sent to the PACS as an SR {when_text(sent)}"
    if _instant(decided) > _instant(sent):
        text += f"; a newer decision ({when_text(decided)}) is not sent yet"
    return text


def _text(value) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    return str(value).strip() or None


def _dicom_date(value: str) -> str:
    """A DICOM DA (YYYYMMDD) as 2026-11-20; anything else as it is."""
    return f"{value[:4]}-{value[4:6]}-{value[6:]}" if len(value) == 8 and value.isdigit() \
        else value


def _instant(iso: str):
    from datetime import datetime, timezone
    when = datetime.fromisoformat(str(iso))
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def when_text(iso: str) -> str:
    """'on 2026-12-08 at 10:31 UTC' from an ISO time."""
    from datetime import timezone
    return _instant(iso).astimezone(timezone.utc).strftime("on %Y-%m-%d at %H:%M UTC")


# -- claims: who is reviewing a case right now (advice; decisions are guarded by Drawn) -------
def claim_case(wl: Worklist, case_id: int, reviewer: str | None):
    """Claim the case for `reviewer` (taken, or renewed: the page calls this on every rerun
    while the case is open), or the other holder's live claim (Claim.mine False). None while
    the reviewer has no name yet (local mode before one is typed): nothing is claimed."""
    if not reviewer or not str(reviewer).strip():
        return None
    with _claim_errors():
        return wl.claim_case(int(case_id), str(reviewer).strip())


class ClaimFailed(RuntimeError):
    """A claim could not be written (full disk, read-only database): the case stays readable
    and its form usable; the message says why."""


@contextmanager
def _claim_errors():
    from sqlalchemy.exc import SQLAlchemyError

    from cxr.worklist import WorklistUnavailable
    try:
        yield
    except WorklistUnavailable:  # the server is away: the page's own message, not a claim's
        raise
    except (OSError, sqlite3.Error, SQLAlchemyError) as exc:
        reason = write_problem(exc).split(": ", 1)[1].split(". ")[0]
        raise ClaimFailed(f"This case could not be claimed for you ({reason}); other "
                          "reviewers are not told that you have it open.") from exc


def claim_note(claim) -> str | None:
    """The line other reviewers see (plain text), or None for one's own claim or no claim."""
    if claim is None or claim.mine:
        return None
    return (f"Being reviewed by {claim.holder} until {clock_time(claim.expires_at)}: you can "
            "look at this case, but its form is read-only until they decide it or their claim "
            "runs out (it is renewed while they work on it).")


def clock_time(iso: str) -> str:
    """'10:31 UTC' from an ISO time."""
    from datetime import datetime, timezone
    when = datetime.fromisoformat(str(iso))
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).strftime("%H:%M UTC")


def release_claim(wl: Worklist, case_id: int | None, reviewer: str | None) -> None:
    """Give up one's claim on a case one has left (someone else's claim stays)."""
    if case_id is not None and reviewer and str(reviewer).strip():
        with _claim_errors():
            wl.release_claim(int(case_id), str(reviewer).strip())


def worklist_problem(exc: BaseException) -> str | None:
    """The page's message for a worklist it cannot use (None: not such an error): the server
    is unreachable, or the schema is another version (the message says what to run)."""
    from cxr.worklist import SchemaMismatch, WorklistUnavailable
    if isinstance(exc, WorklistUnavailable):
        return (f"The worklist is not available right now: {exc} Decisions made before are "
                "kept; reload this page when the database is back.")
    if isinstance(exc, SchemaMismatch):
        return f"This dashboard cannot use the worklist as it is: {exc}"
    if isinstance(exc, OSError):
        return f"The worklist cannot be read: {exc}"
    return None


# The page's inputs to keep across a run that could not draw them (the database went away):
# Streamlit drops the state of widgets a run does not draw. The form's fields (d_...) and the
# filters without an explicit default (giving those a value again would be refused).
KEPT_FILTERS = ("f_finding", "f_call", "f_ood", "f_status", "f_sort", "f_order")


def kept_inputs(state) -> dict:
    """The reviewer's inputs in `state` (st.session_state) worth restoring on the next run."""
    return {k: state[k] for k in list(state)
            if isinstance(k, str) and (k.startswith("d_") or k in KEPT_FILTERS)}


# -- the decision form ----------------------------------------------------------------------
@dataclass(frozen=True)
class Drawn:
    """What a case's form was drawn for: the case and its number of decisions then."""
    case_id: int
    n_decisions: int


def form_key(field: str, case_id: int, generation: int = 0) -> str:
    """A form widget's key: one set per case (and per saved decision), so every case's form
    starts empty and a form's values can only ever be those typed for that case."""
    return f"d_{field}_{int(case_id)}_{int(generation)}"


class SaveFailed(RuntimeError):
    """The worklist could not be written; the message says why, in words for the reviewer."""


def save_decision(wl: Worklist, drawn: Drawn | None, case_id: int, decision: str,
                  reviewer: str, note: str, corrected: list[str]) -> int:
    """Record a submitted form for `case_id`, drawn as `drawn` (the previous rerun's form):
    refused (CaseChanged, a ValueError) if the form was drawn for another case or the case's
    decisions changed since; a failed write (full disk, read-only or unreachable database) is a
    SaveFailed whose message says nothing was recorded. Bad input is a ValueError."""
    from cxr.worklist import CaseChanged
    if drawn is None or drawn.case_id != int(case_id):
        raise CaseChanged(f"this form was not drawn for case {case_id}; nothing was recorded. "
                          "Check the case and submit again.")
    from sqlalchemy.exc import SQLAlchemyError

    from cxr.worklist import WorklistUnavailable
    try:
        return record_decision(wl, int(case_id), decision, reviewer, note, corrected,
                               expected_decisions=drawn.n_decisions)
    except WorklistUnavailable as exc:  # says it all, the masked URL included
        raise SaveFailed(f"{exc} Your entries are kept in the form.") from exc
    except ValueError:
        raise
    except (OSError, sqlite3.Error, SQLAlchemyError) as exc:
        raise SaveFailed(write_problem(exc)) from exc


def write_problem(exc: BaseException) -> str:
    """A failed write in words: nothing was recorded, why, and that the form keeps its input.
    Only the database's own reason is shown (never the statement, which holds the note)."""
    orig = getattr(exc, "orig", None) or exc
    reason = (getattr(orig, "strerror", None) if isinstance(orig, OSError) else None) or \
        str(orig.args[0] if getattr(orig, "args", None) else orig)
    text = reason.lower()
    if (isinstance(orig, OSError) and orig.errno == errno.ENOSPC) or "full" in text:
        why = "the disk holding the worklist is full"
    elif "readonly" in text or "read-only" in text or \
            (isinstance(orig, OSError) and orig.errno in (errno.EROFS, errno.EACCES)):
        why = "the worklist is read-only for the dashboard"
    else:
        why = f"the worklist could not be written ({reason})"
    return (f"Nothing was recorded: {why}. Your entries are kept in the form; press Record "
            "decision again once the problem is fixed (or tell whoever runs the dashboard).")


# -- films: only through load_image, only under the image roots ---------------------------
IMAGE_ROOTS_ENV = "CXR_IMAGE_ROOTS"


class FilmUnavailable(ValueError):
    """A case's film that this dashboard will not read (missing, or outside the image roots)."""


def image_roots(data_root: Path, env: dict | None = None) -> tuple[Path, ...]:
    """The folders case films may be read from: the dashboard's data folder, plus those in
    CXR_IMAGE_ROOTS (separated by os.pathsep), each resolved (symbolic links followed)."""
    env = os.environ if env is None else env
    extra = [p for p in str(env.get(IMAGE_ROOTS_ENV, "")).split(os.pathsep) if p.strip()]
    return tuple(dict.fromkeys(Path(p).expanduser().resolve() for p in [data_root, *extra]))


def film_path(path: str | None, roots) -> Path:
    """The case's recorded film path, resolved, if it lies under one of `roots`; else
    FilmUnavailable (nothing is opened to decide: only the path is looked at, and stat)."""
    if not isinstance(path, str) or not path:
        raise FilmUnavailable("no film path recorded for this case")
    where = Path(path).resolve()  # follows links: a link under a root to /etc leaves the roots
    if not any(where.is_relative_to(root) for root in roots):
        raise FilmUnavailable(f"the film's recorded path is outside the image folders this "
                              f"dashboard reads ({IMAGE_ROOTS_ENV} and its data folder)")
    if not where.is_file():
        raise FilmUnavailable("the film is not at its recorded path on this machine")
    return where


def load_film(path: str | None, roots) -> LoadedImage:
    """A case's film through cxr.data.images.load_image (its size limits) and the frontal
    check, only under `roots`: FilmUnavailable, or ImageLoadError naming the file."""
    where = film_path(path, roots)
    return check_frontal(load_image(where, name=where.name), where.name)
