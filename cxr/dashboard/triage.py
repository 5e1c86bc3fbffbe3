"""The Triage page's logic: its filters as a worklist query, the case table, a case's numbers, the
run checkpoint that made a case (found by its sha256) and a reviewer's decision.

    wl = Worklist(roots.worklist)
    cases = find_cases(wl, finding="Effusion", status="pending", uncertainty=(0.1, 0.5))
    table = case_table(cases)                  # with each case's uncertainty rule
    rules_caption(cases)                       # 'uncertainty: each case's image score ...'
    ckpt = checkpoint_for(cases.iloc[0]["checkpoint_hash"], list_runs(roots.runs))
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd

from cxr.hashing import file_sha256
from cxr.labels import FINDINGS
from cxr.uncertainty import describe_rule
from cxr.worklist import PROB, STD, Worklist

ANY = "any"               # the finding and status choices that filter nothing
MAX_UNCERTAINTY = 0.5     # the uncertainty slider's top (a probability's std is at most 0.5)
# the first is the default: each case's image score under its uncertainty rule
SORTS = {"uncertainty (image score, by rule)": "uncertainty", "mean std": "mean_std",
         "max std": "max_std", "image": "image", "newest": "created_at",
         **{f"P({f})": f"prob_{f}" for f in FINDINGS}}
DEFAULT_SORT = next(iter(SORTS))


def find_cases(wl: Worklist, finding: str = ANY, min_prob: float = 0.5, status: str = ANY,
               uncertainty: tuple[float, float] = (0.0, MAX_UNCERTAINTY),
               sort: str = DEFAULT_SORT, ascending: bool = False) -> pd.DataFrame:
    """The page's filters as a Worklist.cases query. 'any' and the slider's ends filter nothing,
    so cases without a std (external models) stay listed until the slider is moved."""
    lo, hi = uncertainty
    return wl.cases(finding=None if finding == ANY else finding, min_prob=min_prob,
                    status=None if status == ANY else status,
                    min_uncertainty=lo if lo > 0 else None,
                    max_uncertainty=hi if hi < MAX_UNCERTAINTY else None,
                    sort=SORTS[sort], ascending=ascending)


def case_table(cases: pd.DataFrame) -> pd.DataFrame:
    """One row per case: id, image, model, status, uncertainty (the image score) and its rule,
    the top finding and its P, the uncertain flag, the latest reviewer, then P per finding."""
    probs = cases[PROB].to_numpy()
    table = cases[["id", "image", "model", "status", "uncertainty"]].copy()
    table["rule"] = cases["uncertainty_rule"].fillna("")
    table["top finding"] = [FINDINGS[k] for k in probs.argmax(axis=1)]
    table["top P"] = probs.max(axis=1)
    table["uncertain"] = cases["uncertain"].astype(bool)
    table["reviewer"] = cases["reviewer"].fillna("")
    for f in FINDINGS:
        table[f] = cases[f"prob_{f}"]
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


def case_probabilities(case: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) per finding, in FINDINGS order; std 0 where the predictions had none."""
    return case[PROB].to_numpy(dtype=float), np.nan_to_num(case[STD].to_numpy(dtype=float))


def checkpoint_for(checkpoint_hash: str, runs) -> Path | None:
    """The best.pt among `runs` (RunInfo) whose sha256 is the case's, or None: the predictions
    were made by a checkpoint that is not among the runs (elsewhere, or retrained since)."""
    for run in runs:
        try:
            stat = run.checkpoint.stat()
        except OSError:  # no best.pt (yet), or being replaced right now
            continue
        if _sha256(str(run.checkpoint), stat.st_mtime_ns, stat.st_size) == checkpoint_hash:
            return run.checkpoint
    return None


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
