"""`cxr <command>`: one entry point, each command lives in its own module.

Every command module exposes `add_arguments(parser)` and `run(args) -> int`; modules are
imported only when their command runs, so `cxr split` does not pay for importing torch models.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "synth": ("cxr.synth.generate", "generate the synthetic demo dataset (ChestX-ray14 layout)"),
    "split": ("cxr.data.splits", "make a leak-free patient or official split"),
    "prepare": ("cxr.data.cache", "decode and resize images once into a memory-mapped cache"),
    "train": ("cxr.train.cli", "train a model (two-phase schedule, resumable, torchrun-ready)"),
    "calibrate": ("cxr.evaluation.calibrate",
                  "fit a checkpoint's calibration, operating points and OOD guard (a sidecar)"),
    "evaluate": ("cxr.evaluation.evaluate", "score a checkpoint or a predictions CSV"),
    "compare": ("cxr.evaluation.compare", "compare evaluated runs (Table 2, paired bootstrap)"),
    "predict": ("cxr.predict", "predict images or folders, optionally with Grad-CAM"),
    "worklist": ("cxr.worklist", "import predictions into the review worklist, export decisions"),
    "audit": ("cxr.audit", "site audit of one model's queue against its reviewers (audit.json)"),
    "pacs": ("cxr.pacs.cli", "read studies from a PACS (DICOMweb), send results back as DICOM"),
    "demo": ("cxr.demo", "the README's run command: demo data, training, evaluation, worklist"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="cxr", description="CXR Review command line.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser.print_help()
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    name = argv[0]
    module = importlib.import_module(COMMANDS[name][0])
    cmd_parser = argparse.ArgumentParser(prog=f"cxr {name}", description=COMMANDS[name][1])
    module.add_arguments(cmd_parser)
    args = cmd_parser.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except (ValueError, OSError) as exc:  # bad input or unreadable files: a message, no traceback
        print(f"cxr {name}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
