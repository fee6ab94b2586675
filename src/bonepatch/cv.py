"""Cross-validation summary: ``python -m bonepatch.cv RUN_DIRS... [--out DIR]``.

Reads each run's ``metrics_val.json`` (written by ``bonepatch.train`` after training: the fold's
validation Dice of its best checkpoint, raw and with the post-processing chosen on it) and
``metrics_test.json`` when present, and writes the per-class Dice mean ± sd across the folds as
``cv_summary.json`` and ``cv_summary.md`` (in ``--out``, default the runs' common folder). A
``-m`` sweep folder may be given for its runs. Standard deviations are sample ones (n - 1); one
run gives none.
"""
from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

from .anatomy import CLASSES
from .postprocess import combine

ROWS = [*CLASSES[1:], "mean"]


def find_runs(paths) -> list[Path]:
    """Run folders holding metrics_val.json: the paths themselves, or the runs below them."""
    runs = []
    for p in map(Path, paths):
        if (p / "metrics_val.json").is_file():
            runs.append(p)
        elif p.is_dir():
            runs += sorted(f.parent for f in p.rglob("metrics_val.json"))
        else:
            raise SystemExit(f"{p}: not a run folder; give the folders train.py wrote (with metrics_val.json)")
    if not runs:
        raise SystemExit(f"no metrics_val.json under {', '.join(map(str, paths))}: train with validation "
                         "(postprocess_on_val=true, the default) first")
    return list(dict.fromkeys(runs))


def _stats(values: list[float]) -> dict:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    n = len(vals)
    mean = sum(vals) / n if n else math.nan
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else math.nan
    return {"mean": mean, "sd": sd, "n": n, "per_fold": values}


def _dice(metrics: dict, name: str) -> float:
    value = metrics.get("dice_mean" if name == "mean" else f"dice_{name}")
    return math.nan if value is None else float(value)


def _postprocessed(metrics: dict) -> dict:
    """Per-class Dice with the fold's chosen post-processing (its raw Dice where none was chosen)."""
    pp = metrics.get("postprocess") or {}
    chosen, largest = set(pp.get("largest_component", [])), pp.get("dice_largest", {})
    out = {f"dice_{n}": largest[n] if n in chosen else _dice(metrics, n) for n in CLASSES[1:]}
    vals = [v for v in out.values() if not math.isnan(v)]
    out["dice_mean"] = sum(vals) / len(vals) if vals else math.nan
    return out


def summarise(runs: list[Path]) -> dict:
    """The summary dict: per table ("val", "val_postprocessed", "test") per class mean/sd/n/per_fold."""
    vals = [json.loads((r / "metrics_val.json").read_text()) for r in runs]
    tables = {"val": vals, "val_postprocessed": [_postprocessed(m) for m in vals]}
    tests = [r / "metrics_test.json" for r in runs]
    if all(t.is_file() for t in tests):
        tables["test"] = [json.loads(t.read_text()) for t in tests]
    folds = [m.get("fold") for m in vals]
    notes = []
    if len(set(folds)) < len(folds):
        notes.append(f"folds repeat ({folds}): the mean is not a cross-validation estimate")
    return {"runs": [{"dir": str(r), "fold": f, "view": m.get("view")} for r, f, m in zip(runs, folds, vals)],
            "tables": {k: {row: _stats([_dice(m, row) for m in ms]) for row in ROWS} for k, ms in tables.items()},
            "ensemble_postprocess": combine([m.get("postprocess") for m in vals]), "notes": notes}


def _cell(s: dict) -> str:
    if math.isnan(s["mean"]):
        return "-"
    return f"{s['mean']:.3f}" + ("" if math.isnan(s["sd"]) else f" ± {s['sd']:.3f}")


def markdown(summary: dict) -> str:
    tables = summary["tables"]
    heads = {"val": "val Dice", "val_postprocessed": "val, post-processed", "test": "test Dice"}
    cols = [k for k in heads if k in tables]
    n = len(summary["runs"])
    lines = [f"Cross-validation: {n} run(s), folds {[r['fold'] for r in summary['runs']]}, "
             f"view {sorted({str(r['view']) for r in summary['runs']})}; Dice mean ± sd across folds.", "",
             "| class | " + " | ".join(heads[c] for c in cols) + " |", "|---|" + "---|" * len(cols)]
    for row in ROWS:
        label = "**mean**" if row == "mean" else row
        lines.append(f"| {label} | " + " | ".join(_cell(tables[c][row]) for c in cols) + " |")
    lines += ["", "Post-processing for the fold ensemble (keep the largest piece): "
              + (", ".join(summary["ensemble_postprocess"]) or "none")]
    lines += [f"Note: {t}" for t in summary["notes"]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bonepatch.cv", description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="run folders of the folds (or a -m sweep folder)")
    p.add_argument("--out", type=Path, help="folder for cv_summary.json / .md (default: the runs' common folder)")
    a = p.parse_args(argv)
    runs = find_runs(a.runs)
    out = a.out or Path(os.path.commonpath([str(r.resolve()) for r in runs]))
    summary = summarise(runs)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cv_summary.json").write_text(json.dumps(summary, indent=1, allow_nan=True))
    text = markdown(summary)
    (out / "cv_summary.md").write_text(text)
    print(text + f"\nwritten: {out / 'cv_summary.json'}, {out / 'cv_summary.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
