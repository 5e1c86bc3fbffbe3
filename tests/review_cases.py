"""Worklists with known answers for the triage-order, audit and recalibration tests: a
predictions.csv written from hand-made cases, imported into a real SQLite worklist."""
from __future__ import annotations

import pandas as pd

from cxr.labels import FINDINGS
from cxr.worklist import Worklist

HASH = "a" * 64


def case(image, prob=None, cal=None, calls=None, score=0.01, uncertain=False, ood_score=1.0,
         ood=False, point="youden"):
    """One case: prob/cal {finding: value} (others 0.05; cal defaults to prob), calls
    {finding: call} (others negative), score: every std_ (the 'mean' rule's score)."""
    prob = {f: 0.05 for f in FINDINGS} | (prob or {})
    cal = prob | (cal or {})
    calls = {f: "negative" for f in FINDINGS} | (calls or {})
    row = {"Image Index": image}
    row |= {f"prob_{f}": prob[f] for f in FINDINGS}
    row |= {f"std_{f}": score for f in FINDINGS}
    row |= {"uncertain": uncertain, "uncertainty": score, "uncertainty_rule": "mean"}
    if point is not None:
        row |= {f"cal_{f}": cal[f] for f in FINDINGS}
        row |= {f"call_{f}": calls[f] for f in FINDINGS}
        row |= {"operating_point": point, "ood_score": ood_score, "ood": ood}
    return row


def worklist(tmp_path, rows, model="fusion", checkpoint_hash=HASH, name="wl.sqlite",
             target=None):
    """A worklist holding `rows` (case() dicts), imported in that order (ids 1, 2, ...), at
    tmp_path / name or at `target` (a path or URL: the wl_target fixture's backends)."""
    csv = tmp_path / f"pred-{checkpoint_hash[:6]}.csv"
    frame = pd.DataFrame(rows)
    if "operating_point" in frame and frame["operating_point"].isna().any():
        raise ValueError("all rows or none with a readout")
    frame.to_csv(csv, index=False)
    wl = Worklist(target or tmp_path / name)
    wl.import_predictions(csv, model, checkpoint_hash)
    return wl

