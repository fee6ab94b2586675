"""Reporting side of ``benchmarks/compare.py``: targets, JSON/CSV, figures, markdown section."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from bonepatch.anatomy import CLASSES
from bonepatch.viz import montage, overlay, save_png

TARGET_DICE, TARGET_MARGIN, TARGET_INFER_S, TARGET_THROUGHPUT = 0.95, 0.02, 0.5, 0.8


def _get(results: dict, method: str, key: str) -> float | None:
    value = results.get(method, {}).get(key)
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


#: per-seed figures kept (and given a sample sd) when a method ran with several seeds
SEED_KEYS = ("dice_mean", *(f"dice_{c}" for c in CLASSES[1:]), "nme", "pck@0.02", "pck@0.05")


def over_seeds(runs: list[dict]) -> dict:
    """One method's runs (one per seed) -> one result: numbers averaged over seeds, figures that
    differ by seed in ``per_seed``, their sample sd (ddof=1) in ``sd``. One run is returned as is."""
    if len(runs) == 1:
        return runs[0]
    out = dict(runs[0])
    for k, v in runs[0].items():
        vals = [r.get(k) for r in runs]
        if isinstance(v, (int, float)) and not isinstance(v, bool) and all(isinstance(x, (int, float)) for x in vals):
            out[k] = v if all(x == v for x in vals) else float(np.mean(vals))
    out["seed"] = [r["seed"] for r in runs]
    keys = [k for k in SEED_KEYS if all(k in r for r in runs)]
    out["per_seed"] = [{"seed": r["seed"], **{k: r[k] for k in keys}} for r in runs]
    out["sd"] = {k: float(np.std([r[k] for r in runs], ddof=1)) for k in keys}
    return out


def paired_lead(results: dict, base: str) -> list[float] | None:
    """joint - base mean Dice per seed (``per_seed`` of ``over_seeds``; same seeds, same order),
    or None unless both ran with several seeds."""
    a, b = (results.get(m, {}).get("per_seed") or [] for m in ("joint", base))
    if len(a) < 2 or [r["seed"] for r in a] != [r["seed"] for r in b]:
        return None
    return [x["dice_mean"] - y["dice_mean"] for x, y in zip(a, b)]


def targets(results: dict, profile: str, on_gpu: bool) -> list[dict]:
    """The issue's four targets, each with the measured value and met / NOT met / n/a (on the
    means); with several seeds the lead's per-seed values, sd and standard error in the note."""
    def row(name, value, ok, note=""):
        status = "n/a" if value is None or ok is None else ("met" if ok else "NOT met")
        return {"target": name, "value": value, "status": status, "note": note}

    joint = _get(results, "joint", "dice_mean")
    rows = [row("joint mean Dice >= 0.95", joint, None if joint is None else joint >= TARGET_DICE)]
    for base in ("single_stage", "fixed_patch"):
        other = _get(results, base, "dice_mean")
        diff = None if joint is None or other is None else joint - other
        lead = paired_lead(results, base)
        sd = None if lead is None else float(np.std(lead, ddof=1))
        note = "" if lead is None else ("per seed " + ", ".join(f"{d:+.3f}" for d in lead) + f"; sd {sd:.3f}, "
                                        f"standard error {sd / np.sqrt(len(lead)):.3f}")
        rows.append(row(f"joint - {base} mean Dice >= 0.02", diff, None if diff is None else diff >= TARGET_MARGIN,
                        note))
    infer = _get(results, "joint", "infer_cpu2_b1_s")
    note = "" if profile == "gpu" else f"at the {profile} profile's reduced resolution, not 1024x256"
    rows.append(row("joint inference <= 0.5 s/view on 2 CPU cores (batch 1)", infer,
                    None if infer is None else infer <= TARGET_INFER_S, note))
    j, s = _get(results, "joint", "train_views_per_s"), _get(results, "single_stage", "train_views_per_s")
    ratio = None if j is None or s is None or s == 0 else j / s
    rows.append(row("joint training throughput >= 0.8x single_stage (same GPU)", ratio,
                    None if ratio is None or not on_gpu else ratio >= TARGET_THROUGHPUT,
                    "" if on_gpu else "measured on the CPU; the target is for a GPU"))
    return rows


SCALARS = ("params", "dice_mean", "nme", "pck@0.02", "pck@0.05", "train_views_per_s", "step_s",
           "step_compute_s", "gpu_util_percent", "train_wall_s", "test_wall_s", "infer_device_b1_s",
           "infer_device_batched_s", "infer_cpu2_b1_s", "cpu_peak_rss_mb", "gpu_peak_alloc_mb",
           "preloaded_step_s", "loader_step_s", "loader_overhead")


def write_tables(report: dict, json_path: Path, csv_path: Path) -> None:
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2, allow_nan=True))
    dice_cols = [f"dice_{c}" for c in CLASSES[1:]]
    with csv_path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", *SCALARS, *dice_cols])
        for m, r in report["methods"].items():
            w.writerow([m, *[r.get(k, "") for k in SCALARS], *[r.get(k, "") for k in dice_cols]])


def dice_chart(results: dict, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(CLASSES[1:])
    methods = list(results)
    width = 0.8 / max(len(methods), 1)
    fig, ax = plt.subplots(figsize=(12, 4.5))
    x = np.arange(len(names) + 1)
    for i, m in enumerate(methods):
        vals = [results[m].get(f"dice_{c}", float("nan")) for c in names] + [results[m]["dice_mean"]]
        ax.bar(x + (i - (len(methods) - 1) / 2) * width, np.nan_to_num(vals), width, label=m)
    ax.set_xticks(x, names + ["MEAN"], rotation=35, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("Dice (test set)")
    ax.axhline(TARGET_DICE, color="k", lw=0.8, ls="--")
    ax.set_title(title)
    ax.legend(ncol=len(methods), fontsize=8, loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def overlay_montage(views: dict, results: dict, path: Path, index: int) -> None:
    """Truth, then each method's prediction on the same test view."""
    first = next(iter(views.values()))
    pics = [overlay(first["image"], first["truth"], legend=False, title=f"truth (test view {index})")]
    for m, v in views.items():
        pics.append(overlay(v["image"], v["pred"], keypoints=v["keypoints"], boxes=v["boxes"], legend=False,
                            title=f"{m} Dice {results[m]['dice_mean']:.3f}"))
    save_png(montage(pics), path)


def _fmt(v, digits=3):
    if v is None or v == "" or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, int) or (isinstance(v, float) and abs(v) >= 1000):
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def _pm(r: dict, key: str, digits: int = 3) -> str:
    """'mean' or 'mean ± sd' (several seeds)."""
    sd = (r.get("sd") or {}).get(key)
    return _fmt(r.get(key), digits) + ("" if sd is None else f" ± {sd:.{digits}f}")


def _res(phantom: dict) -> str:
    mm = phantom.get("mm_per_px")
    return f"{phantom['height']}x{phantom['width']}" + (f" at {mm} mm/px" if mm else " (default spacing)")


def markdown(report: dict, name: str) -> str:
    """The benchmarks.md section of one run; ``name`` names its image files (default: the profile)."""
    res, profile = report["methods"], report["profile"]
    title = f"`{profile}` profile" + (f", run `{name}`" if name != profile else "")
    lines = [f"## Method comparison on the phantom ({title})", "",
             f"Same phantom splits (train seed {report['data']['seeds']['train']}, {report['data']['train_views']} views; "
             f"val seed {report['data']['seeds']['val']}, {report['data']['val_views']}; test seed "
             f"{report['data']['seeds']['test']}, {report['data']['test_views']} anterior + posterior views never used "
             f"for training or model selection), phantom {_res(report['data']['phantom'])}; same budget for every method: "
             f"{report['budget']['steps']} optimiser steps of batch {report['budget']['batch']} (staged: split over its "
             f"stages), encoder {report['budget']['encoder']}, augmentation {report['budget']['augment']}, "
             f"lr {report['budget']['lr']}, precision {report['budget']['precision']}. Best validation checkpoint tested."
             + ("" if len(report.get("seeds") or []) < 2 else
                f" Trained once per seed ({', '.join(map(str, report['seeds']))}: weight init, batch order, "
                "augmentation; same phantom splits): accuracy figures are mean ± sd over seeds (sample sd), "
                "speed and memory figures means."), "",
             "| method | mean Dice | NME | PCK@2% | PCK@5% | params | train views/s | step s (compute) "
             "| infer s/view b1 (device) | infer s/view batched | infer s/view 2 CPU b1 | peak RSS MB | peak GPU MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for m, r in res.items():
        lines.append("| " + " | ".join([m, _pm(r, "dice_mean"), _pm(r, "nme", 4), _pm(r, "pck@0.02"),
                                        _pm(r, "pck@0.05"), f"{r['params']/1e6:.2f} M",
                                        _fmt(r.get("train_views_per_s"), 1),
                                        f"{_fmt(r.get('step_s'))} ({_fmt(r.get('step_compute_s'))})",
                                        _fmt(r.get("infer_device_b1_s"), 4), _fmt(r.get("infer_device_batched_s"), 4),
                                        _fmt(r.get("infer_cpu2_b1_s"), 3), _fmt(r.get("cpu_peak_rss_mb"), 0),
                                        _fmt(r.get("gpu_peak_alloc_mb"), 0)]) + " |")
    lines += ["", *class_table(res), "", f"![per-class Dice](img/compare_{name}_dice.png)", "",
              f"![one test view, every method](img/compare_{name}_overlays.png)", "",
              "| target | measured | status | note |", "|---|---|---|---|"]
    for t in report["targets"]:
        lines.append(f"| {t['target']} | {_fmt(t['value'])} | **{t['status']}** | {t['note']} |")
    gpu_rows = [(m, r) for m, r in res.items() if "preloaded_step_s" in r]
    if gpu_rows:
        lines += ["", "Data loading check (GPU): median step time on one batch held on the GPU vs through the "
                  "DataLoader (cached phantom), and mean GPU utilisation during training:", "",
                  "| method | step s, preloaded | step s, DataLoader | loader overhead | GPU util % |", "|---|---|---|---|---|"]
        for m, r in gpu_rows:
            lines.append(f"| {m} | {_fmt(r['preloaded_step_s'], 4)} | {_fmt(r['loader_step_s'], 4)} | "
                         f"{100 * r['loader_overhead']:+.1f}% | {_fmt(r.get('gpu_util_percent'), 0)} |")
    mach, d = report["machine"], report["data"]
    calib = report["budget"].get("calibration")
    lines += ["", f"Data generation: train {d['render_train_s']:.1f} s, val {d['render_val_s']:.1f} s, test "
              f"{d['render_test_s']:.1f} s (CachedDataset, {mach['cpu_cores']} cores). Whole run: "
              f"{report['total_wall_s']:.0f} s{' (steps chosen by calibration: ' + json.dumps(calib) + ')' if calib else ''}.",
              f"Throughput: median of steady-state training steps (first steps and steps after validation excluded), "
              f"through the DataLoader. CPU timings with {report['cpu_threads']} threads. Peak RSS includes the cached data.",
              "", f"Machine: {mach['cpu']} ({mach['cpu_cores']} cores){', GPU ' + mach['gpu'] if 'gpu' in mach else ''}; "
              f"{mach['platform']}, Python {mach['python']}.",
              "Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()) + ".",
              f"Command: `{report['command']}` ({report['date']})."]
    over = {m: r.get("overrides") for m, r in res.items() if r.get("overrides")}
    if over:
        lines.append("Config changes (`--set`) applied: " + "; ".join(f"{m}: {', '.join(v)}" for m, v in over.items()) + ".")
    lines.append("")
    return "\n".join(lines)


def class_table(res: dict) -> list[str]:
    """Per-class test Dice, one row per method (markdown lines); the best value per class in bold."""
    names = [k[5:] for k in next(iter(res.values())) if k.startswith("dice_") and k != "dice_mean"]
    best = {c: max((r.get(f"dice_{c}") or 0.0) for r in res.values()) for c in names}
    lines = ["| method | " + " | ".join(c.replace("_vertebrae", " v.") for c in names) + " |",
             "|---|" + "---|" * len(names)]
    for m, r in res.items():
        cells = [_pm(r, f"dice_{c}", 2 if r.get("sd") else 3) for c in names]
        cells = [f"**{v}**" if r.get(f"dice_{c}") is not None and len(res) > 1 and r[f"dice_{c}"] == best[c] else v
                 for v, c in zip(cells, names)]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines


def replace_section(md_path: Path, profile: str, body: str, kind: str = "compare") -> None:
    """Replace only the text between the markers ``<!-- kind:profile:start/end -->`` (appended when absent)."""
    start, end = f"<!-- {kind}:{profile}:start -->", f"<!-- {kind}:{profile}:end -->"
    text = md_path.read_text() if md_path.exists() else ""
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text and end in text and text.index(start) < text.index(end):
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + ("\n\n" if text.strip() else "") + block + "\n"
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(text)
