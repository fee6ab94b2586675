"""Why is a keypoint-patch model below its target? Oracle boxes, box coverage, keypoint errors.

    python benchmarks/diagnose_patches.py --ckpt outputs/compare_cpu/joint/checkpoints/best.ckpt \
        --name cpu_joint [--baseline-json docs/benchmarks/compare_cpu.json]

Renders the phantom test set the checkpoint was trained for (its config: resolution and spacing;
seed 2, ``--test-views``), runs the model with its own keypoints and with the true ones
(``bonepatch.diagnose``) and writes ``docs/benchmarks/diagnose_<name>.json``,
``docs/img/diagnose_<name>.png`` and the ``diagnose:<name>`` section of ``docs/benchmarks.md``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

import compare_report as rep  # noqa: E402
from bonepatch.data.cache import CachedDataset  # noqa: E402
from bonepatch.data.dataset import PhantomDataset  # noqa: E402
from bonepatch.diagnose import PatchDiagnosis  # noqa: E402
from bonepatch.checkpoint import load_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ckpt", required=True, help="a KeypointPatchSegmenter checkpoint (train.py / compare.py)")
    p.add_argument("--name", required=True, help="names the output files and the benchmarks.md section")
    p.add_argument("--test-views", type=int, default=200)
    p.add_argument("--seed", type=int, default=2, help="phantom test seed (2 = the test split everywhere)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--baseline-json", default=None, help="a compare_<name>.json whose single_stage row is shown too")
    p.add_argument("--docs", default=str(ROOT / "docs"))
    return p.parse_args(argv)


def chart(res: dict, baseline: dict | None, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = res["classes"]
    series = [("Dice, predicted keypoints", res["dice_pred"]), ("Dice, true keypoints", res["dice_true"]),
              ("coverage, predicted boxes", res["coverage_pred"])]
    if baseline:
        series.append(("Dice, single_stage", [baseline.get(f"dice_{c}", np.nan) for c in classes]))
    x, w = np.arange(len(classes)), 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(12, 4), dpi=100)
    for i, (label, vals) in enumerate(series):
        ax.bar(x + (i - (len(series) - 1) / 2) * w, vals, w, label=label)
    ax.set_xticks(x, [c.replace("_vertebrae", " v.") for c in classes], rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("Dice / share of true pixels")
    ax.set_title(title)
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def markdown(report: dict, name: str) -> str:
    res, base = report["result"], report.get("baseline")
    lines = [f"## Where the keypoint-patch model loses Dice (`{name}`)", "",
             f"Checkpoint `{report['ckpt']}`, {res['views']} phantom test views (seed {report['seed']}, "
             f"{report['phantom']['height']}x{report['phantom']['width']}). Mean Dice with its own keypoints "
             f"{res['dice_mean_pred']:.3f}, with the true keypoints {res['dice_mean_true']:.3f}; NME {res['nme']:.4f}. "
             "Coverage = share of a class's true pixels inside a box whose region may predict the class "
             "(a ceiling on recall).", "",
             "| | " + " | ".join(c.replace("_vertebrae", " v.") for c in res["classes"]) + " |",
             "|---|" + "---|" * len(res["classes"])]
    rows = [("Dice, predicted keypoints", res["dice_pred"]), ("Dice, true keypoints", res["dice_true"]),
            ("coverage, predicted boxes", res["coverage_pred"]), ("coverage, true-keypoint boxes", res["coverage_true"])]
    if base:
        rows.append(("Dice, single_stage", [base.get(f"dice_{c}") for c in res["classes"]]))
    lines += [f"| {label} | " + " | ".join(rep._fmt(v) for v in vals) + " |" for label, vals in rows]
    worst = sorted(res["keypoint_nme"].items(), key=lambda kv: -kv[1])[:5]
    lines += ["", "Largest keypoint errors (NME, share of body height): "
              + ", ".join(f"{k} {v:.4f}" for k, v in worst) + ".", "",
              f"![Dice and coverage per class](img/diagnose_{name}.png)", "",
              f"Command: `{report['command']}` ({report['date']}).", ""]
    return "\n".join(lines)


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    model, config = load_model(args.ckpt)
    if not hasattr(model, "keypoint_net"):
        raise SystemExit(f"{args.ckpt}: a {type(model).__name__} has no keypoints/boxes to diagnose; "
                         "give a keypoint-patch (pipeline) checkpoint")
    phantom = {**dict(config["data"]["test_dataset"].get("config") or {}), "view": "both", "rib_label": "region"}
    data = CachedDataset(PhantomDataset(args.seed, args.test_views, config=phantom))
    diag = PatchDiagnosis()
    for start in tqdm(range(0, len(data), args.batch), desc="diagnose", unit="batch"):
        items = [data[i] for i in range(start, min(start + args.batch, len(data)))]
        diag.update(model, *(torch.stack([s[k] for s in items]) for k in ("image", "mask", "keypoints")))
    baseline = None
    if args.baseline_json:
        baseline = json.loads(Path(args.baseline_json).read_text())["methods"].get("single_stage")
    report = {"ckpt": str(args.ckpt), "seed": args.seed, "phantom": phantom, "result": diag.result(),
              "baseline": baseline and {k: v for k, v in baseline.items() if k.startswith("dice_")},
              "date": datetime.datetime.now().isoformat(timespec="seconds"),
              "command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(sys.argv[1:] if argv is None else argv)])}
    docs = Path(args.docs)
    (docs / "benchmarks").mkdir(parents=True, exist_ok=True)
    (docs / "benchmarks" / f"diagnose_{args.name}.json").write_text(json.dumps(report, indent=1))
    chart(report["result"], report["baseline"], docs / "img" / f"diagnose_{args.name}.png",
          f"{args.name}: Dice with predicted vs true keypoints, and box coverage")
    rep.replace_section(docs / "benchmarks.md", args.name, markdown(report, args.name), kind="diagnose")
    print(markdown(report, args.name))
    return report


if __name__ == "__main__":
    main()
