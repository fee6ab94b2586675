"""Evidence for predict.py's input handling and refusal thresholds (docs/predict.md).

    python benchmarks/predict_robust.py --ckpt CKPT [--real DIR] [--n 24] [--json OUT.json]
                                        [--figure docs/img/predict_robust]

1. Refusal evidence: keypoints found (confidence >= the threshold, inside the view), mean
   confidence and the check outcome on phantom views at the model's size (whole, cut to the top
   or bottom 60%), on noise images (run through the model although screening flags them first)
   and on the scans in ``--real`` (JPG/PNG/DICOM files; nothing of them is stored).
2. Self-consistency of the model: mean Dice (classes present in either map) of its map of a
   phantom view against its map of the same view transformed (inverted, landscape, truncated,
   side by side with a caption, 2x, 0.5x, wide margins), the transform applied to the first map.
3. ``--figure``: before / after overlays of a phantom pair (or, ``--figure-source real``, the
   first ``--real`` scan) exported four ways; "before"
   is the earlier predict.py (stretch to the model size, no polarity, orientation or panels).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from bonepatch.checkpoint import load_model
from bonepatch.data.io import ScanView, read_views
from bonepatch.data.phantom import PhantomConfig, render
from bonepatch.geometry.resize import Letterbox, resize_counts, resize_labels
from bonepatch.predict import Predictor, model_geometry, segment_image
from bonepatch.predict_checks import CheckOptions, check_prediction, found_keypoints, screen
from bonepatch.predict_prepare import PrepareOptions
from bonepatch.viz import montage, overlay

CHECKS = CheckOptions()
NO_CHECKS = CheckOptions(refuse_unsure=False)


def dice(a, b) -> float:
    classes = [c for c in np.union1d(np.unique(a), np.unique(b)) if c > 0]
    return float(np.mean([2 * ((a == c) & (b == c)).sum() / ((a == c).sum() + (b == c).sum()) for c in classes]))


def raw_evidence(predictor, image) -> dict:
    """The model on the image as it is (plain fit), checks applied: found, mean confidence, reason."""
    pred = predictor([ScanView(np.asarray(image, np.float32), "unknown", None, "x")])[0]
    found = found_keypoints(pred.confidence, pred.inside, CHECKS)
    reason = check_prediction(pred.labels, pred.keypoints, pred.confidence, pred.inside, CHECKS)
    return {"found": int(found.sum()), "confidence": round(float(pred.confidence.mean()), 3),
            "found_at": _found_at(pred.confidence, pred.inside),
            "screen": screen(image, 1000.0).split(":")[0], "check": reason.split(":")[0] or "ok"}


def _found_at(confidence, inside) -> dict:
    """Keypoints inside the view at confidence >= 0.3, 0.4, 0.5: how the threshold was chosen."""
    return {t: int(((confidence >= t) & inside).sum()) for t in (0.3, 0.4, 0.5)}


def pipeline_evidence(predictor, image) -> dict:
    """The same through predict()'s path (prepare: truncation fit, keypoints inside the view)."""
    r, = segment_image(predictor, ScanView(np.asarray(image, np.float32), "unknown", None, "x"), PrepareOptions(),
                       CHECKS)
    c = r.prediction.confidence if r.prediction is not None else np.zeros(1)
    return {"found": None if r.found is None else int(r.found.sum()), "confidence": round(float(c.mean()), 3),
            "found_at": None if r.prediction is None else _found_at(c, r.prediction.inside),
            "check": r.reason.split(":")[0] or "ok"}


def on_input(predictor, image, view="anterior", **prep):
    results = segment_image(predictor, ScanView(np.asarray(image, np.float32), view, None, "x"),
                            PrepareOptions(**prep), NO_CHECKS)
    return [r.prepared.frame.to_input(r.labels) for r in results]


def consistency(predictor, ant, post) -> dict:
    """Mean Dice of the map of each transformed view against the original's map, transformed alike."""
    h, w = ant.shape
    ref, = on_input(predictor, ant)
    ref_post, = on_input(predictor, post, "posterior")
    out = {"inverted": dice(on_input(predictor, ant.max() - ant)[0], ref),
           "landscape": dice(on_input(predictor, np.rot90(ant).copy())[0], np.rot90(ref))}
    cut = int(0.6 * h)
    out["truncated_bottom"] = dice(on_input(predictor, ant[:cut].copy())[0], ref[:cut])
    out["truncated_top"] = dice(on_input(predictor, ant[h - cut:].copy())[0], ref[h - cut:])
    caption = Image.new("F", (2 * w, h // 20), 0.0)
    ImageDraw.Draw(caption).text((4, 1), "ANT          POST", fill=float(ant.max()))
    shot = np.concatenate([np.asarray(caption), np.concatenate([ant, post], 1)], 0)
    maps = on_input(predictor, shot)
    top = caption.height  # not split: 0, a failure
    pair = (dice(maps[0][top:, :w], ref) + dice(maps[1][top:, w:], ref_post)) / 2 if len(maps) == 2 else 0.0
    out["side_by_side"] = pair
    for name, f in (("size_2x", 2.0), ("size_0.5x", 0.5)):
        size = (round(h * f), round(w * f))
        out[name] = dice(on_input(predictor, resize_counts(ant, size))[0], resize_labels(ref, size))
    pad = w // 4
    margins = ((0, 0), (pad, pad))
    out["wide_margins"] = dice(on_input(predictor, np.pad(ant, margins))[0], np.pad(ref, margins))
    return out


def _old_overlay(predictor, image, title):
    """The earlier predict.py: screening on the raw image, then a stretch to the model size."""
    why = screen(image, 1000.0)
    if why:
        return overlay(image, scale=1, legend=False, title=f"before: flag, {why.split(':')[0]}")
    box = Letterbox(image.shape, predictor.size, predictor.size, 0, 0)  # stretched
    pred = predictor([ScanView(image, "unknown", None, "x")], [box])[0]
    return overlay(image, pred.labels, np.concatenate([pred.keypoints, pred.confidence[:, None]], 1),
                   scale=1, legend=False, title=f"before: ok ({title})")


def figure(predictor, ant, post, stem) -> list[str]:
    """One picture per export kind: the earlier predict.py's overlay, then the new one(s)."""
    caption = Image.new("F", (512, 48), 0.0)
    ImageDraw.Draw(caption).text((40, 16), "ANTERIOR                          POSTERIOR", fill=255.0)
    rng = np.random.default_rng(5)
    cases = {"inverted": ant.max() - ant, "landscape": np.rot90(ant).copy(), "truncated": ant[:600].copy(),
             "side_by_side": np.concatenate([np.asarray(caption), np.concatenate([ant, post], 1)], 0),
             "near_empty": (rng.poisson(0.004, ant.shape) * 60).astype(np.float32)}  # stray counts, no patient
    paths = []
    for name, image in cases.items():
        pictures = [_old_overlay(predictor, image, name)]
        for r in segment_image(predictor, ScanView(image, "unknown", None, "x"), PrepareOptions(), CHECKS):
            kp = None if r.prediction is None else np.concatenate(
                [r.prediction.keypoints, r.prediction.confidence[:, None]], 1)
            done = ", ".join(n.split(":")[0].split(" (")[0] for n in r.prepared.notes)
            label = f"after: {r.status}, " + (r.reason.split(":")[0] if r.reason else f"{r.prepared.view.view}; {done}")
            pictures.append(overlay(r.prepared.view.image, r.labels, kp, scale=1, legend=False, title=label))
        paths.append(f"{stem}_{name}.png")
        Image.fromarray(montage(pictures, gap=8)).save(paths[-1])
    return paths


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True)
    p.add_argument("--real", help="folder of real scans to check the thresholds on (not stored anywhere)")
    p.add_argument("--n", type=int, default=24, help="phantom views (default 24)")
    p.add_argument("--json", help="write the numbers here")
    p.add_argument("--figure", help="write the before/after pictures to <FIGURE>_<case>.png")
    p.add_argument("--figure-source", choices=("phantom", "real"), default="phantom",
                   help="the scan the pictures show: a phantom pair (default) or the first --real pair "
                        "(for looking only: do not publish scans whose licence forbids it)")
    a = p.parse_args()
    model, config = load_model(a.ckpt)
    size, mirror = model_geometry(config)
    predictor = Predictor(model, size, "cpu", mirror)
    pc = dict((config["data"]["train_dataset"].get("config") or {}))
    cfg = PhantomConfig(height=size[0], width=size[1], mm_per_px=float(pc.get("mm_per_px", 2.4 * 1024 / size[0])))
    views = [np.asarray(render(1000, i, cfg)["image"], np.float32) for i in range(a.n)]
    rng = np.random.default_rng(0)
    noise = {"poisson5": rng.poisson(5, size), "poisson0.3": rng.poisson(0.3, size),
             "uniform8bit": rng.integers(0, 256, size), "gauss_blobs": np.abs(rng.normal(0, 1, size)) * 20,
             "sparse_hot": rng.poisson(0.01, size) * 50, "inverted_poisson": 255 - rng.poisson(3, size),
             "stray_hot_pixels": rng.poisson(1, size) + (rng.random(size) < 0.001) * 200}
    report = {"ckpt": a.ckpt, "size": size,
              "phantom": [raw_evidence(predictor, v) for v in views],
              "phantom_kept_top": {f: [pipeline_evidence(predictor, v[:round(f * size[0])]) for v in views[: a.n // 2]]
                                   for f in (0.3, 0.45, 0.6)},
              "phantom_kept_bottom": {f: [pipeline_evidence(predictor, v[-round(f * size[0]):])
                                          for v in views[: a.n // 2]] for f in (0.45, 0.6)},
              "noise": {k: raw_evidence(predictor, v.astype(np.float32)) for k, v in noise.items()}}
    truth = [render(2000, i, PhantomConfig(height=size[0], width=size[1], mm_per_px=cfg.mm_per_px, truncate_prob=0.3,
                                           child_prob=0.2, scoliosis_prob=0.3)) for i in range(4 * a.n)]
    kps = [np.asarray(t["keypoints"]) for t in truth]
    refused = [check_prediction(np.asarray(t["mask"]), k[:, :2], k[:, 2], k[:, 2] > 0, CHECKS)
               for t, k in zip(truth, kps)]
    report["truth_refused"] = {"views": len(truth), "refused": [r for r in refused if r]}
    pairs = [consistency(predictor, views[i], views[i + 1]) for i in range(0, min(a.n, 12), 2)]
    report["consistency"] = {k: round(float(np.mean([c[k] for c in pairs])), 4) for k in pairs[0]}
    report["consistency_min"] = {k: round(float(np.min([c[k] for c in pairs])), 4) for k in pairs[0]}
    if a.real:
        real = {}
        for f in sorted(Path(a.real).glob("*")):
            try:
                views = read_views(f)
            except ValueError:  # not a scan (colour pictures, notes)
                continue
            for v in views:
                for r in segment_image(predictor, v, PrepareOptions(), CHECKS):
                    c = r.prediction.confidence if r.prediction is not None else np.zeros(1)
                    real[f.name] = {"status": r.status, "reason": r.reason.split(":")[0],
                                    "found": None if r.found is None else int(r.found.sum()),
                                    "found_at": None if r.prediction is None else _found_at(c, r.prediction.inside),
                                    "confidence": round(float(c.mean()), 3)}
        report["real"] = real
    if a.figure:  # a phantom pair by default: real scans' licences rarely allow publishing them
        if a.figure_source == "real":
            if not a.real:
                p.error("--figure-source real needs --real DIR")
            jpgs = sorted(Path(a.real).glob("*_ant.jpg"))
            ant = read_views(jpgs[0])[0].image
            post = read_views(jpgs[0].with_name(jpgs[0].name.replace("_ant", "_post")))[0].image
        else:
            from bonepatch.data import phantom
            pair = phantom.render_pair(7, 3, phantom.PhantomConfig())
            ant, post = (np.asarray(v["image"], np.float32) for v in pair)
        report["figures"] = figure(predictor, ant, post, a.figure)
    text = json.dumps(report, indent=1)
    print(text)
    if a.json:
        Path(a.json).write_text(text)


if __name__ == "__main__":
    main()
