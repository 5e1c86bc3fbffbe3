"""The demo's simulated reviewer: a few decisions on the demo worklist, so that the Audit page has
something to show on a fresh machine. Every one is marked `simulated` in the worklist and made
under a name that says so; the pages say it too.

    >>> from cxr.demo_reviews import simulate_reviews
    >>> simulate_reviews(Worklist(db), checkpoint_hash, truth, n=40)   # truth: image -> findings

The simulated reviewer reads the synthetic dataset's own labels (the demo knows them): it
agrees when the model's positive calls are exactly the labelled findings and otherwise
disagrees, ticking the labelled findings. It works down the `urgent` queue order, as a reading
room would, and only on a queue nobody has decided yet (a second demo run adds nothing).
"""
from __future__ import annotations

from pathlib import Path

from cxr.labels import FINDINGS

REVIEWER = "simulated reviewer (demo)"
N_REVIEWS = 40
NOTE = "simulated by cxr demo from the synthetic labels; not a person's reading"


def simulate_reviews(wl, checkpoint_hash: str, truth: dict[str, set[str]],
                     n: int = N_REVIEWS) -> int:
    """Record up to n simulated decisions on the queue's cases with a readout and a known
    truth; returns how many were recorded (0 when the queue already has decisions)."""
    from cxr.triage_order import order_cases
    cases = wl.cases(checkpoint_hash=checkpoint_hash)
    if cases.empty or (cases["status"] != "pending").any():
        return 0
    names = cases["image"].map(lambda key: Path(key).name)  # keys may be relative paths
    cases = cases[cases["operating_point"].notna() & names.isin(list(truth))]
    done = 0
    for row in order_cases(cases, "urgent").head(n).itertuples(index=False):
        labelled = truth[Path(row.image).name]
        called = {f for f in FINDINGS if getattr(row, f"call_{f}") == "positive"}
        agree = called == labelled
        wl.record_decision(int(row.id), "agree" if agree else "disagree", REVIEWER, note=NOTE,
                           corrected=None if agree else sorted(labelled), simulated=True)
        done += 1
    return done


def dataset_truth(data_dir: str | Path) -> dict[str, set[str]]:
    """image -> the findings its Data_Entry_2017.csv row lists (the synthetic demo's labels)."""
    from cxr.data.layout import DatasetFiles
    from cxr.data.metadata import read_data_entry
    table = read_data_entry(DatasetFiles.locate(data_dir).data_entry)
    labels = table[list(FINDINGS)].to_numpy(dtype=bool)
    return {image: {f for f, on in zip(FINDINGS, row) if on}
            for image, row in zip(table["image"], labels)}
