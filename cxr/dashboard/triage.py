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

One queue is one checkpoint's cases, so a film appears once in it, whereas the demo's worklist
as a whole holds every test film once per model.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

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
    """One row per case: id, image, the OOD mark, model, status, uncertainty (the image score)
    and its rule, the findings called positive (empty without a readout), the OOD score, the
    top finding and its P, the uncertain flag, the latest reviewer, then P per finding."""
    probs = cases[PROB].to_numpy()
    table = cases[["id", "image"]].copy()
    table["OOD"] = [OOD_MARK if flag == 1 else "" for flag in cases["ood"]]
    table[["model", "status", "uncertainty"]] = cases[["model", "status", "uncertainty"]]
    table["rule"] = cases["uncertainty_rule"].fillna("")
    table["positive calls"] = positive_calls(cases)
    table["OOD score"] = cases["ood_score"].astype(float)
    table["top finding"] = [FINDINGS[k] for k in probs.argmax(axis=1)]
    table["top P"] = probs.max(axis=1)
    table["uncertain"] = cases["uncertain"].astype(bool)
    table["reviewer"] = cases["reviewer"].fillna("")
    table[list(FINDINGS)] = probs
    return table


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
                    corrected: list[str]) -> int:
    """Record the form's decision. The ticked findings are kept when there are some, and with
    'disagree' always: 'disagree' with none ticked means No Finding."""
    keep = decision == "disagree" or bool(corrected)
    return wl.record_decision(case_id, decision, reviewer=reviewer, note=note,
                              corrected=list(corrected) if keep else None)
