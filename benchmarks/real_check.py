"""Real-scan check: a checkpoint's label maps on real scans against reference label maps.

    PYTHONPATH=src python benchmarks/real_check.py --images ../shared/data/real/bs80k_*.jpg \
        --reference ../shared/data/real/reference --ckpt CKPT [--skip-posterior sternum,clavicle] \
        [--out DIR] [--docs docs --name NAME]

For every view of every image (JPG/PNG/DICOM/NPY, ``bonepatch.data.io.read_views``) the reference
is ``REFERENCE/STEM.png`` (STEM = the image's file name without suffix; a two-frame DICOM's
views use ``STEM_ant.png`` / ``STEM_post.png``), a label map with the ids of ``anatomy.CLASSES``
in the image's frame. Per class Dice (classes with >= 20 reference pixels; ``--skip-posterior``
leaves classes out on posterior views, e.g. where the reference is unreliable), per-view means,
the mean over classes (of the per-class means over views), and anatomical order checks of each
prediction. Writes ``OUT/real_check.json``, ``OUT/STEM_check.png`` (image | reference |
prediction) and, with ``--docs``, ``docs/img/real_check_NAME.png`` (not with ``--no-picture``:
real scans that may not be copied into the project) and the ``real_check:NAME`` section of
``docs/benchmarks.md``.
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

from bonepatch.anatomy import CLASS_IDS, CLASSES, side_masks  # noqa: E402
from bonepatch.predict_checks import CheckOptions, anatomy_order  # noqa: E402

MIN_PIXELS = 20


def _machine() -> str:
    """'<cores>-core <CPU model>' of this machine (lscpu), never assumed."""
    import os

    from bench_utils import cpu_model
    return f"{os.cpu_count()}-core {cpu_model()}"


def dice_per_class(pred: np.ndarray, ref: np.ndarray, skip=()) -> dict[str, float]:
    """{class: Dice} over the classes with >= MIN_PIXELS reference pixels, minus ``skip``."""
    out = {}
    for c, name in enumerate(CLASSES[1:], start=1):
        r = ref == c
        if name in skip or r.sum() < MIN_PIXELS:
            continue
        p = pred == c
        out[name] = float(2 * (r & p).sum() / (r.sum() + p.sum()))
    return out


PAIRED = ("clavicle", "scapula", "humerus", "pelvis", "femur")


def order_checks(labels: np.ndarray, view: str) -> dict[str, bool]:
    """Anatomical plausibility of one (H, W) label map: named checks, True = passed.

    vertical_order: the rule ``predict.py`` refuses maps by (``predict_checks.anatomy_order``:
    class centroids in their head-to-foot order, default tolerance); and three checks only this
    report makes: clavicle_above_rib_centre; sternum_in_thorax (anterior: the sternum's centroid
    lies within the thoracic rows); both_sides (each paired class present has pixels on both sides
    of the spine midline).
    """
    ys = {n: np.nonzero(labels == CLASS_IDS[n])[0] for n in CLASSES[1:]}
    cy = {n: float(v.mean()) for n, v in ys.items() if len(v) >= MIN_PIXELS}
    out = {"vertical_order": anatomy_order(labels, None, None, CheckOptions()) == ""}
    if "clavicle" in cy and "rib" in cy:
        out["clavicle_above_rib_centre"] = cy["clavicle"] < cy["rib"]
    if view == "anterior" and "sternum" in cy and "thoracic_vertebrae" in cy:
        t = ys["thoracic_vertebrae"]
        out["sternum_in_thorax"] = bool(t.min() <= cy["sternum"] <= t.max())
    left, right = side_masks(labels)
    out["both_sides"] = all(((labels == CLASS_IDS[n]) & left).sum() >= 5 and ((labels == CLASS_IDS[n]) & right).sum() >= 5
                            for n in PAIRED if n in cy)
    return out


def summarise(views: list[dict]) -> dict:
    """Per-class means over views, the mean over classes, the worst class, checks passed."""
    per_class: dict[str, list[float]] = {}
    for v in views:
        for k, d in v["dice"].items():
            per_class.setdefault(k, []).append(d)
    means = {k: float(np.mean(d)) for k, d in per_class.items()}
    return {"per_class": means, "mean_over_classes": float(np.mean(list(means.values()))) if means else float("nan"),
            "min_class": min(means.items(), key=lambda kv: kv[1]) if means else None,
            "mean_over_views": float(np.mean([v["mean"] for v in views])) if views else float("nan"),
            "checks_passed": sum(all(v["checks"].values()) for v in views), "n_views": len(views)}


def _reference_for(ref_dir: Path, image: Path, view, n_views: int) -> Path:
    tag = "" if n_views == 1 else "_" + ("post" if view.view == "posterior" else "ant")
    return ref_dir / f"{image.stem}{tag}.png"


def _picture(image, ref, pred, title: str) -> np.ndarray:
    from bonepatch.viz import montage, overlay

    return montage([overlay(image, None, scale=1, legend=False, title=f"{title}: image"),
                    overlay(image, ref, scale=1, legend=False, title="reference"),
                    overlay(image, pred, scale=1, legend=True, title="prediction")])


def check(images, ref_dir, ckpt, out_dir, skip_posterior=(), device="cpu", tta=False) -> dict:
    """Predict ``images`` with ``ckpt`` and compare with ``ref_dir`` maps (module docstring)."""
    from bonepatch.checkpoint import load_model
    from bonepatch.data.io import read_mask, read_views
    from bonepatch.predict import Predictor, model_geometry
    from bonepatch.viz import save_png

    model, config = load_model(ckpt)
    size, mirror = model_geometry(config)
    predictor = Predictor(model, size, device, mirror, tta)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    views, pictures, missing = [], [], []
    for path in map(Path, images):
        scans = read_views(path)
        for scan, pred in zip(scans, predictor(scans)):
            ref_path = _reference_for(Path(ref_dir), path, scan, len(scans))
            if not ref_path.exists():
                missing.append(str(ref_path))
                continue
            ref = read_mask(ref_path, scan.image.shape)
            labels = pred.labels
            skip = skip_posterior if scan.view == "posterior" else ()
            dice = dice_per_class(labels, ref, skip)
            stem = ref_path.stem
            views.append({"view": stem, "orientation": scan.view, "dice": dice,
                          "mean": float(np.mean(list(dice.values()))) if dice else float("nan"),
                          "checks": order_checks(labels, scan.view),
                          "reference_checks": order_checks(ref, scan.view)})
            pic = _picture(scan.image, ref, labels, stem)
            save_png(pic, out_dir / f"{stem}_check.png")
            pictures.append(pic)
    report = {"ckpt": str(ckpt), "reference": str(ref_dir), "skip_posterior": list(skip_posterior),
              "model_size": list(size), "views": views, "missing_references": missing, **summarise(views)}
    (out_dir / "real_check.json").write_text(json.dumps(report, indent=1))
    report["pictures"] = pictures
    return report


def markdown(report: dict, name: str, argv: list[str], picture: str | None) -> str:
    """The docs/benchmarks.md section of one check."""
    cls = report["per_class"]
    lines = [f"## Real-scan check: {name}", "",
             f"`python benchmarks/real_check.py {shlex.join(argv)}` "
             f"({datetime.date.today().isoformat()}, {_machine()}). Reference maps: "
             f"`{report['reference']}`; posterior views skip {', '.join(report['skip_posterior']) or 'nothing'}.",
             "", f"Mean Dice over classes **{report['mean_over_classes']:.3f}** (per-view mean "
             f"{report['mean_over_views']:.3f}); lowest class {report['min_class'][0]} "
             f"{report['min_class'][1]:.3f}; order checks passed on {report['checks_passed']} of "
             f"{report['n_views']} views.", "",
             "| class | " + " | ".join(k.replace("_vertebrae", "") for k in cls) + " |",
             "|---|" + "---|" * len(cls), "| Dice | " + " | ".join(f"{v:.3f}" for v in cls.values()) + " |",
             "", "| view | mean Dice | failed checks |", "|---|---|---|"]
    for v in report["views"]:
        failed = [k for k, ok in v["checks"].items() if not ok]
        lines.append(f"| {v['view']} | {v['mean']:.3f} | {', '.join(failed) or '-'} |")
    if picture:
        lines += ["", f"![real check {name}]({picture})"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", nargs="+", required=True, help="real scans (JPG/PNG/DICOM/NPY)")
    p.add_argument("--reference", type=Path, required=True, help="folder of STEM.png reference maps")
    p.add_argument("--ckpt", required=True, help="checkpoint (train.py output)")
    p.add_argument("--out", type=Path, default=Path("real_check_out"), help="output folder")
    p.add_argument("--skip-posterior", default="", help="comma-separated classes left out on posterior views")
    p.add_argument("--device", default="cpu")
    p.add_argument("--tta", action="store_true", help="flip test-time augmentation")
    p.add_argument("--docs", type=Path, help="docs folder: write img/real_check_NAME.png and a benchmarks.md section")
    p.add_argument("--name", default="real", help="section / picture name (with --docs)")
    p.add_argument("--no-picture", action="store_true",
                   help="with --docs: numbers only, no overlay picture in docs/img (scans that may not "
                        "be copied into the project, e.g. licensed or patient data)")
    a = p.parse_args(argv)
    skip = tuple(s for s in a.skip_posterior.split(",") if s)
    for s in skip:
        CLASS_IDS[s]  # noqa: B018 - a KeyError that lists the class names
    r = check(a.images, a.reference, a.ckpt, a.out, skip, a.device, a.tta)
    for v in r["views"]:
        print(f"{v['view']}: mean Dice {v['mean']:.3f}; " + ", ".join(f"{k} {d:.2f}" for k, d in v["dice"].items())
              + ("" if all(v["checks"].values()) else f"  FAILED {[k for k, ok in v['checks'].items() if not ok]}"))
    print("per class: " + ", ".join(f"{k} {d:.3f}" for k, d in r["per_class"].items()))
    print(f"mean over classes {r['mean_over_classes']:.3f} across {r['n_views']} views; order checks passed "
          f"on {r['checks_passed']}/{r['n_views']}" + (f"; no reference for {r['missing_references']}"
                                                     if r["missing_references"] else ""))
    if a.docs and r["pictures"]:
        from bonepatch.viz import montage, save_png
        from compare_report import replace_section

        rel = None if a.no_picture else f"img/real_check_{a.name}.png"
        if rel:
            save_png(montage(r["pictures"]), a.docs / rel)
        replace_section(a.docs / "benchmarks.md", a.name, markdown(r, a.name, argv, rel), kind="real_check")
    return r


if __name__ == "__main__":
    main()
