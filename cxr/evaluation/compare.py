"""`cxr compare`: the report's Table 2 from evaluated runs, plus paired macro-AUC differences.

    cxr compare runs/simple_cnn runs/densenet121 runs/efficientnet_b0 runs/fusion --out cmp/
    cxr compare runs/a/eval runs/b/eval --out cmp/ --bootstrap 1000 --seed 0

Each argument is a run directory (its `eval/` is read) or an eval folder itself, as written by
`cxr evaluate`. Writes:
  table.csv / table.md    findings as rows, models as columns, macro AUC last; the best per row
                          is bold in Markdown and named in the CSV's `best` column
  paired.csv / paired.md  macro AUC of A minus B for every pair, with a patient-level paired
                          bootstrap 95% CI and two-sided p-value (the SAME resampled patients
                          score both models, so the shared noise of the test set cancels)
Runs scored on different test images, or against different label files, are refused: their
AUCs are not comparable. Labels come from the file each metrics.json names (`--labels` overrides).
"""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cxr.evaluation.bootstrap import paired_difference
from cxr.evaluation.metrics import macro_auc, per_finding_auc
from cxr.evaluation.predictions import Predictions, read_predictions, write_csv
from cxr.evaluation.scoring import labels_for
from cxr.labels import FINDINGS
from cxr.rundir import EVAL, EvalDir, RunDir

MACRO_ROW = "Macro AUC"


@dataclass
class Evaluated:
    name: str
    eval_dir: Path
    metrics: dict
    preds: Predictions


def add_arguments(parser) -> None:
    parser.add_argument("runs", nargs="+", help="run directories (or their eval/ folders)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--bootstrap", type=int, default=1000, help="paired bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--labels", help="Data_Entry_2017.csv[.gz] (default: the one each "
                                         "metrics.json names)")


def load_evaluated(path: str | Path) -> Evaluated:
    folder = RunDir(path).eval
    if not folder.metrics.is_file():
        folder = EvalDir(path)
    if not folder.metrics.is_file():
        raise FileNotFoundError(f"{path} has no eval/metrics.json: run `cxr evaluate` on it first")
    metrics = json.loads(folder.metrics.read_text())
    preds = read_predictions(folder.predictions)
    model = (metrics.get("model") or {}).get("name")
    return Evaluated(model or _run_name(folder.path), folder.path, metrics, preds)


def _run_name(eval_dir: Path) -> str:
    """The run's folder name for RUN_DIR/eval, else the eval folder's own name."""
    return (eval_dir.parent if eval_dir.name == EVAL else eval_dir).name


def _unique_names(evals: list[Evaluated]) -> None:
    names = [e.name for e in evals]
    for e in evals:  # two runs of one architecture: tell them apart by their folder
        if names.count(e.name) > 1:
            e.name = f"{e.name} ({_run_name(e.eval_dir)})"


def check_same_images(evals: list[Evaluated]) -> None:
    """ValueError naming the run and the differing images unless all scored the same images."""
    ref, ref_set = evals[0], set(evals[0].preds.images)
    for e in evals[1:]:
        other = set(e.preds.images)
        if other != ref_set:
            only_e, only_ref = sorted(other - ref_set), sorted(ref_set - other)
            raise ValueError(
                f"{e.eval_dir} was evaluated on different images than {ref.eval_dir}: "
                f"{len(only_e)} only in it (first: {', '.join(only_e[:5]) or '-'}), "
                f"{len(only_ref)} only in {ref.eval_dir} "
                f"(first: {', '.join(only_ref[:5]) or '-'}); "
                "compare runs scored on the same test set")
    versions = {e.metrics.get("data_version") for e in evals}
    if len(versions) > 1:
        raise ValueError("runs were scored against different label files: "
                         f"{sorted(map(str, versions))}")


def auc_table(metrics: dict[str, dict]) -> pd.DataFrame:
    """The report's Table 2 from metrics.json contents by model name: rows the 14 findings then
    MACRO_ROW, one float column per model, NaN where a model has no AUC (the Evaluate page and
    `cxr compare` both build it here)."""
    cols = {name: [(m.get("per_finding", {}).get(f) or {}).get("auc") for f in FINDINGS]
            + [m.get("macro_auc")] for name, m in metrics.items()}
    return pd.DataFrame(cols, index=pd.Index([*FINDINGS, MACRO_ROW], name="finding"), dtype=float)


def best_models(table: pd.DataFrame) -> list[str]:
    """Per row, every model with the row's highest AUC, joined by '|' ('' when none has one)."""
    best = table.max(axis=1)
    return [("|".join(c for c in table.columns if table.at[row, c] == best[row])
             if np.isfinite(best[row]) else "") for row in table.index]


def _md_row(cells) -> str:
    return "| " + " | ".join(cells) + " |"


def table_markdown(table: pd.DataFrame, note: str) -> str:
    models = [c for c in table.columns if c != "best"]
    lines = [_md_row(["Finding", *models]), _md_row(["---", *["---:"] * len(models)])]
    for row in table.index:
        best = set(table.at[row, "best"].split("|"))
        cells = []
        for c in models:
            v = table.at[row, c]
            text = "n/a" if not np.isfinite(v) else f"{v:.3f}"
            cells.append(f"**{text}**" if c in best and np.isfinite(v) else text)
        label = f"**{row}**" if row == MACRO_ROW else row
        lines.append(_md_row([label, *cells]))
    return "\n".join(lines) + f"\n\n{note}\n"


def paired_table(evals: list[Evaluated], y: np.ndarray, patients: np.ndarray,
                 n_resamples: int, seed: int) -> pd.DataFrame:
    """Every pair (A, B) in argument order: macro AUC of each, A - B, 95% CI, p-value."""
    images = evals[0].preds.images  # each model's rows in this order
    probs = [pd.DataFrame(e.preds.prob, index=e.preds.images).loc[images].to_numpy() for e in evals]
    included = ~np.isnan(per_finding_auc(y, probs[0]))  # depends on labels only
    macros = [macro_auc(per_finding_auc(y[:, included], p[:, included]))[0] for p in probs]
    rows = []
    for (i, a), (j, b) in itertools.combinations(enumerate(evals), 2):
        d = paired_difference(y, probs[i], probs[j], patients, included, n_resamples, seed)
        ci = d["ci"] or [float("nan")] * 2
        rows.append({"model_a": a.name, "model_b": b.name,
                     "macro_auc_a": macros[i], "macro_auc_b": macros[j],
                     "difference": d["difference"], "ci_low": ci[0], "ci_high": ci[1],
                     "p_value": d["p_value"], "n_resamples": n_resamples, "seed": seed})
    return pd.DataFrame(rows)


def paired_markdown(paired: pd.DataFrame, note: str) -> str:
    lines = [_md_row(["Model A", "Model B", "Macro AUC A", "Macro AUC B", "A - B", "95% CI", "p"]),
             _md_row(["---", "---", "---:", "---:", "---:", "---:", "---:"])]
    for r in paired.itertuples(index=False):
        lines.append(_md_row([r.model_a, r.model_b, f"{r.macro_auc_a:.3f}", f"{r.macro_auc_b:.3f}",
                              f"{r.difference:+.4f}", f"[{r.ci_low:+.4f}, {r.ci_high:+.4f}]",
                              f"{r.p_value:.4f}"]))
    return "\n".join(lines) + f"\n\n{note}\n"


def _labels(evals: list[Evaluated], override: str | None):
    from cxr.data.layout import data_version
    from cxr.data.metadata import read_data_entry

    path = override or evals[0].metrics.get("labels_file")
    if not path:
        raise ValueError(f"{EvalDir(evals[0].eval_dir).metrics} names no labels_file: "
                         "pass --labels")
    recorded = evals[0].metrics.get("data_version")
    if recorded and data_version(path) != recorded:
        raise ValueError(f"labels file {path} is {data_version(path)!r}, but the runs were scored "
                         f"against {recorded!r}")
    return labels_for(evals[0].preds.images, read_data_entry(path), source=str(evals[0].eval_dir))


def run(args) -> int:
    if len(args.runs) < 2:
        raise ValueError("cxr compare needs at least two evaluated runs")
    evals = [load_evaluated(r) for r in args.runs]
    _unique_names(evals)
    check_same_images(evals)
    y, patients = _labels(evals, args.labels)
    m = evals[0].metrics
    note = (f"Test images: {len(y)} from {len(np.unique(patients))} patients; split "
            f"{m.get('split')} ({m.get('strategy')}, split seed {m.get('split_seed')}); data "
            f"{m.get('data_version')}. Research tool, not for diagnosis.")
    out = Path(args.out)
    table = auc_table({e.name: e.metrics for e in evals})
    table["best"] = best_models(table)
    write_csv(table.reset_index(), out / "table.csv")
    (out / "table.md").write_text(table_markdown(table, "AUC per finding; best per row in bold. "
                                                 + note))
    paired = paired_table(evals, y, patients, args.bootstrap, args.seed)
    write_csv(paired, out / "paired.csv")
    (out / "paired.md").write_text(paired_markdown(
        paired, f"Paired patient-level bootstrap, {args.bootstrap} resamples, seed {args.seed}; "
        "two-sided p. " + note))
    print(table_markdown(table, note))
    print(f"wrote {out}/table.csv, table.md, paired.csv, paired.md")
    return 0
