"""`cxr pacs`: read studies from a PACS over DICOMweb and send the results back as DICOM.

    export CXR_DICOMWEB_USER=cxr CXR_DICOMWEB_PASSWORD=...       # or CXR_DICOMWEB_TOKEN
    cxr pacs pull --url https://pacs.example.org/dicom-web --since 20250101 \
        --checkpoint checkpoints/fusion/best.pt --db data/worklist.sqlite
    cxr pacs pull --url URL --study 1.2.840.113619.2.55.3 --checkpoint best.pt --no-push
    cxr pacs watch --url URL --every 30s --checkpoint best.pt --progress watch.json
    cxr pacs push-decisions --url URL --db data/worklist.sqlite

Credentials come from the environment or --auth-file (cxr.pacs.client), never from the command
line. pull and watch: cxr.pacs.pull (what is read, predicted, stored and sent), cxr.pacs.watch
(the loop); push-decisions: cxr.pacs.decisions.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

from cxr.pacs.client import Pacs, PacsError


def add_arguments(parser) -> None:
    from cxr.evaluation.operating_points import POINTS
    from cxr.worklist import DEFAULT_DB

    sub = parser.add_subparsers(dest="action", required=True)
    pull = sub.add_parser("pull", help="read studies, predict, import, send results back")
    watch = sub.add_parser("watch", help="pull on a loop (a long-running service)")
    push = sub.add_parser("push-decisions", help="send reviewers' decisions back as SRs")
    for p in (pull, watch, push):
        p.add_argument("--url", required=True, help="the PACS's DICOMweb root, e.g. "
                       "http://localhost:8042/dicom-web")
        p.add_argument("--ca-bundle", type=Path, help="CA certificates to verify TLS with")
        p.add_argument("--auth-file", type=Path, help="JSON credentials file (mode 600)")
        p.add_argument("--db", default=str(DEFAULT_DB),
                       help=f"the worklist: a path or URL (default {DEFAULT_DB})")
    for p in (pull, watch):
        p.add_argument("--checkpoint", type=Path, required=True)
        p.add_argument("--model", help="model name shown to reviewers (default: the checkpoint's)")
        p.add_argument("--out", type=Path, default=Path("predictions/pacs"),
                       help="predictions.csv and errors.csv per study (default predictions/pacs)")
        p.add_argument("--no-push", action="store_true", help="do not send results back")
        p.add_argument("--secondary-capture", action="store_true",
                       help="also send a Grad-CAM overlay image (series 'CXR Review overlay')")
        p.add_argument("--keep-accession", action="store_true",
                       help="copy the Accession Number (an identifier) into the results")
        p.add_argument("--passes", type=int, default=None, help="MC-dropout passes")
        p.add_argument("--seed", type=int, default=0, help="seed of the dropout masks")
        p.add_argument("--operating-point", choices=POINTS, default="youden")
        p.add_argument("--device", default="cpu")
        p.add_argument("--lease-seconds", type=int, default=300,
                       help="how long a study stays leased to this worker (default 300)")
    when = pull.add_mutually_exclusive_group()
    when.add_argument("--since", help="studies from this date on (YYYYMMDD or YYYY-MM-DD)")
    when.add_argument("--study", action="append", default=[], metavar="UID",
                      help="this study (repeatable)")
    watch.add_argument("--since", help="studies from this date on (default: today)")
    watch.add_argument("--every", default="30s", help="time between rounds (default 30s)")
    watch.add_argument("--progress", type=Path, help="a JSON file updated every round")
    push.add_argument("--reviewer", help="only this reviewer's decisions")


def run(args) -> int:
    from cxr.worklist import WorklistUnavailable

    try:
        return _run(args)
    except (PacsError, WorklistUnavailable) as exc:
        print(f"cxr pacs {args.action}: error: {exc}", file=sys.stderr)
        return 1


def _run(args) -> int:
    log = _log
    pacs = Pacs.connect(args.url, ca_bundle=args.ca_bundle, auth_file=args.auth_file, log=log)
    if args.action == "push-decisions":
        from cxr.pacs.decisions import push_decisions
        sent = push_decisions(pacs, args.db, reviewer=args.reviewer, log=log)
        log(f"{sent} decisions sent to {pacs.server}")
        return 0
    from cxr.pacs.pull import Options, Puller
    options = Options(checkpoint=args.checkpoint, db=args.db, out=args.out,
                      push=not args.no_push, secondary_capture=args.secondary_capture,
                      keep_accession=args.keep_accession, model_name=args.model,
                      passes=args.passes, seed=args.seed, operating_point=args.operating_point,
                      device=args.device, lease_seconds=args.lease_seconds)
    if not args.checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint {args.checkpoint} does not exist")
    puller = Puller(pacs, options, log=log)
    since = _date(args.since) if args.since else None
    if args.action == "watch":
        from cxr.pacs.watch import Watcher, parse_every, today
        return Watcher(puller, parse_every(args.every), since or today(), args.progress,
                       log=log).run()
    studies = puller.find_studies(since=since, study_uids=args.study)
    new = puller.enqueue(studies)
    totals = puller.run_leased()
    totals.sent += puller.send_unsent()
    log(f"{len(studies)} studies found, {new} new for this checkpoint; {totals.line()}")
    return 0


def _date(text: str) -> str:
    digits = text.replace("-", "")
    if not re.fullmatch(r"\d{8}", digits):
        raise ValueError(f"--since {text!r}: expected YYYYMMDD or YYYY-MM-DD")
    return digits


def _log(line: str) -> None:
    from datetime import datetime
    print(f"{datetime.now().strftime('%H:%M:%S')} {line}", flush=True)
