"""`cxr worklist`: import predictions, export decisions, upgrade the schema, copy a worklist.

    cxr worklist import out/pred/predictions.csv --model fusion \
        --checkpoint checkpoints/fusion/best.pt --db data/worklist.sqlite
    cxr worklist import checkpoints/fusion/eval/predictions.csv --model fusion \
        --checkpoint checkpoints/fusion/best.pt --images-root data/demo/images
    cxr worklist export --db data/worklist.sqlite --out decisions.csv [--history]
    cxr worklist upgrade --db postgresql+psycopg://cxr@db.example.org/worklist
    cxr worklist copy --from data/worklist.sqlite --to postgresql+psycopg://... [--append]

--db (default $CXR_WORKLIST, else data/worklist.sqlite) is a path (SQLite) or a URL; messages
show a URL with its password masked. Put the password in ~/.pgpass or PGPASSWORD rather than on
the command line.
"""
from __future__ import annotations

from pathlib import Path

from cxr.hashing import file_sha256
from cxr.worklist.db import mask, to_url
from cxr.worklist.store import DEFAULT_DB, Worklist, readout_line


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    db_help = f"worklist path or URL (default {mask(DEFAULT_DB)})"
    imp = sub.add_parser("import", help="add a predictions.csv to the worklist")
    imp.add_argument("predictions", type=Path, help="predictions.csv of cxr predict/evaluate")
    imp.add_argument("--model", required=True, help="model name shown to reviewers")
    which = imp.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", type=Path, help="the checkpoint that made the predictions")
    which.add_argument("--checkpoint-hash", help="its sha256, when the file is elsewhere")
    imp.add_argument("--db", default=DEFAULT_DB, help=db_help)
    imp.add_argument("--images-root", type=Path,
                     help="where the films are, for CSVs without a `source` column")
    exp = sub.add_parser("export", help="write the cases and their decisions to CSV")
    exp.add_argument("--db", default=DEFAULT_DB, help=db_help)
    exp.add_argument("--out", type=Path, required=True)
    exp.add_argument("--history", action="store_true", help="every decision, not just the latest")
    up = sub.add_parser("upgrade", help="bring the worklist's schema to this code's (Alembic)")
    up.add_argument("--db", default=DEFAULT_DB, help=db_help)
    cp = sub.add_parser("copy", help="copy cases and every decision to another worklist")
    cp.add_argument("--from", dest="source", required=True, help="worklist path or URL")
    cp.add_argument("--to", dest="target", required=True, help="worklist path or URL")
    cp.add_argument("--append", action="store_true",
                    help="add to a target that already has cases (else it must be empty)")
    from cxr.worklist_cases import add_cases_command
    add_cases_command(sub)  # `cxr worklist cases --order ...` (cxr/worklist_cases.py)


def run(args) -> int:
    if getattr(args, "func", None) is not None:  # a subcommand that brings its own runner
        return args.func(args)
    if args.action == "import":
        if args.checkpoint is not None and not args.checkpoint.is_file():
            raise FileNotFoundError(f"checkpoint {args.checkpoint} does not exist")
        if not args.predictions.is_file():
            raise FileNotFoundError(f"predictions file {args.predictions} does not exist")
        from cxr.evaluation.predictions import read_predictions

        digest = args.checkpoint_hash or file_sha256(args.checkpoint)
        preds = read_predictions(args.predictions)
        wl = Worklist(args.db)
        counts = wl.import_predictions(args.predictions, args.model, digest,
                                       images_root=args.images_root, preds=preds)
        print(f"{wl.url_masked}: {counts['inserted']} cases added, {counts['skipped']} already "
              f"there; {readout_line(preds)}")
        return 0
    if args.action == "export":
        out = Worklist(args.db, create=False).export_csv(args.out, history=args.history)
        print(f"wrote {out}")
        return 0
    if args.action == "upgrade":
        from cxr.worklist import migrate
        from cxr.worklist.db import make_engine

        url = to_url(args.db)
        if url.get_backend_name() == "sqlite":
            path = Path(url.database or "")
            if not path.is_file():
                raise FileNotFoundError(f"worklist {path} does not exist (nothing to upgrade)")
        engine = make_engine(url)
        try:
            before, head = migrate.upgrade(engine, url)  # an empty database: created at head
        finally:
            engine.dispose()
        done = {"head": "already at", "empty": "created at"}.get(before, "upgraded to")
        print(f"{mask(url)}: schema {done} revision {head}"
              + ("" if before in ("head", "empty") else f" (was {before})"))
        return 0
    from cxr.worklist.copy import copy_worklist

    source = Worklist(args.source, create=False)
    target = Worklist(args.target)
    done = copy_worklist(source, target, append=args.append)
    print(f"copied {source.url_masked} to {target.url_masked}: {done['cases']} cases "
          f"({done['skipped_cases']} already there), {done['decisions']} decisions "
          f"({done['skipped_decisions']} already there), {done['work_items']} work items; "
          f"content sha256 {done['sha256'][:16]} checked")
    return 0
