"""`cxr worklist cases`: one queue's cases in a named order (cxr/triage_order.py).

    cxr worklist cases --db data/worklist.sqlite --order urgent [--model fusion] [--out q.csv]
    cxr worklist cases --order likely-negative --checkpoint runs/fusion/best.pt
    cxr worklist cases --order urgent --urgent Pneumothorax,Mass --status pending

Hooked into `cxr worklist` by `add_cases_command(subparsers)`; its parser's `func` runs it.
The CSV (or the table printed) holds no film path: the case id, image key, model, status, the
reason for its place, the calls, probabilities and uncertainty columns.
"""
from __future__ import annotations

from pathlib import Path

from cxr.labels import FINDINGS

SHOWN = ["id", "image", "model", "status", "reason", "uncertainty", "uncertainty_rule",
         "uncertain", "ood_score", "ood", "operating_point",
         *(f"call_{f}" for f in FINDINGS), *(f"cal_{f}" for f in FINDINGS),
         *(f"prob_{f}" for f in FINDINGS)]


def add_cases_command(subparsers) -> None:
    """`cases` as a subcommand of `cxr worklist` (subparsers: its add_subparsers() result)."""
    from cxr.triage_order import DEFAULT_URGENT, ORDERS
    from cxr.worklist import DEFAULT_DB, STATUSES
    p = subparsers.add_parser("cases", help="one queue's cases in a named order")
    p.add_argument("--db", default=str(DEFAULT_DB), help=f"default {DEFAULT_DB}")
    p.add_argument("--order", choices=ORDERS, required=True)
    p.add_argument("--model", help="the queue's model name (needed when there are several)")
    p.add_argument("--checkpoint-hash", help="the queue's checkpoint sha256 (or a prefix)")
    p.add_argument("--checkpoint", type=Path,
                   help="the queue's checkpoint: its readout gives the high-sensitivity "
                        "thresholds the likely-negative order needs")
    p.add_argument("--urgent", default=",".join(DEFAULT_URGENT),
                   help="comma-separated urgent findings (default %(default)s)")
    p.add_argument("--status", choices=STATUSES, help="only cases with this status")
    p.add_argument("--out", type=Path, help="write the ordered cases to this CSV")
    p.set_defaults(func=run_cases)


def run_cases(args) -> int:
    from cxr.audit import select_queue
    from cxr.hashing import file_sha256
    from cxr.triage_order import order_cases
    from cxr.worklist import Worklist

    wl = Worklist(args.db, create=False)
    digest = None
    if args.checkpoint is not None:
        if not args.checkpoint.is_file():
            raise FileNotFoundError(f"checkpoint {args.checkpoint} does not exist")
        digest = file_sha256(args.checkpoint)
    queue = select_queue(wl.sources(), args.model, digest or args.checkpoint_hash)
    thresholds, note = None, ""
    if args.order == "likely-negative" and args.checkpoint is not None:
        from cxr.readout import load_readout
        readout = load_readout(args.checkpoint)
        if readout is None:
            raise ValueError(f"{args.checkpoint} has no readout: `cxr calibrate` it first")
        thresholds = readout.thresholds("sensitivity")
        note = likely_negative_note(readout)
    cases = wl.cases(checkpoint_hash=queue.checkpoint_hash, status=args.status)
    urgent = [f.strip() for f in args.urgent.split(",") if f.strip()]
    ordered = order_cases(cases, args.order, urgent=urgent, sensitivity_thresholds=thresholds)
    table = ordered[[c for c in ["group", *SHOWN] if c in ordered]]
    if args.out:
        from cxr.atomic import write_text
        from cxr.csvsafe import csv_safe
        write_text(args.out, csv_safe(table).to_csv(index=False))  # no cell runs as a formula
        print(f"wrote {len(table)} cases in {args.order} order to {args.out}")
    else:
        print(table[[c for c in ("group", "id", "image", "status", "reason") if c in table]]
              .to_string(index=False))
    if note:
        print(note)
    return 0


def likely_negative_note(readout) -> str:
    """What the likely-negative list is, with the high-sensitivity point's validation
    sensitivity (the page's caption says the same, cxr.dashboard.orders)."""
    from cxr.triage_order import sensitivity_sentence
    return ("Likely negative: no positive call at the high-sensitivity point, in distribution, "
            "not uncertain. " + sensitivity_sentence(readout) + " These films still need a "
            "reviewer's look. Research use only, not for diagnosis.")
