"""What ``predict.py`` writes for one view, and its ``summary.csv`` row.

Label maps, probabilities and keypoints go onto the input's own pixel grid (``ViewFrame``);
statistics are computed in the upright, polarity-corrected view (image sides of the upright
view, counts of the corrected image); the overlay shows that view as the model read it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import predict_io as pio
from .anatomy import BONE_CLASSES, CLASSES, KEYPOINTS
from .postprocess import keep_largest_components
from .predict_model import ViewPrediction
from .predict_prepare import PreparedView
from .stats import region_stats
from .viz import overlay

SUMMARY_FIELDS = ["input", "frame", "panel", "view", "status", "reason", "notes", "outputs", "height", "width",
                  "region", "inverted", "rotation", "scale", "spacing_mm", "mirrored", "labelled_pixels",
                  "image_counts", "skeletal_counts", "skeletal_share", "keypoint_confidence",
                  "keypoints_found"] + [f"share_{CLASSES[c]}" for c in BONE_CLASSES]
PARTS_OK = ("labels.png", "overlay.png", "keypoints.json", "stats.json")
PARTS_FLAG = ("overlay.png",)


def postprocess(labels: np.ndarray, largest_component=False) -> np.ndarray:
    """The label map (h, w) of a view after the chosen clean-up steps: ``largest_component`` True
    keeps the largest piece of every class, a tuple of class ids of those only (the checkpoint's
    choice made on validation, ``bonepatch.postprocess``), False / () nothing."""
    if largest_component is True:
        return keep_largest_components(labels)
    return keep_largest_components(labels, largest_component) if largest_component else labels


def expected_parts(status: str, save_probs: bool) -> tuple[str, ...]:
    """The files (name suffixes) a complete view of that status has."""
    if status == "ok":
        return PARTS_OK + (("probs.npz",) if save_probs else ())
    return PARTS_FLAG if status == "flag" else ()


def base_row(source: str, pv: PreparedView, prefix: str, mirrored: bool) -> dict:
    """The summary fields every view has, whatever happens to it."""
    v = pv.view
    return {"input": source, "frame": v.frame, "panel": pv.panel, "view": v.view, "status": "ok", "reason": "",
            "notes": "; ".join(pv.notes), "outputs": prefix, "height": v.image.shape[0], "width": v.image.shape[1],
            "region": " ".join(map(str, pv.frame.region())), "inverted": pv.inverted, "rotation": pv.rotation,
            "scale": "" if pv.fit is None else round(pv.fit.scale, 4), "spacing_mm": v.spacing_mm or "",
            "mirrored": mirrored}


def _keypoint_rows(pv: PreparedView, pred: ViewPrediction) -> tuple[list[dict], np.ndarray | None]:
    """(keypoints.json entries in input pixels, (K, 3) view-frame x, y, confidence for the overlay)."""
    if pred.keypoints is None:
        return [], None
    xy = pv.frame.points_to_input(pred.keypoints)
    points = [{"name": n, "x": float(p[0]), "y": float(p[1]), "confidence": float(c), "inside": bool(i)}
              for n, p, c, i in zip(KEYPOINTS, xy, pred.confidence, pred.inside)]
    return points, np.concatenate([pred.keypoints, pred.confidence[:, None]], 1)


def _info(pv: PreparedView) -> dict:
    return {"view": pv.view.view, "frame": pv.view.frame, "panel": pv.panel, "image_size": list(pv.frame.shape),
            "region": list(pv.frame.region()), "rotation": pv.rotation, "inverted": pv.inverted}


def write_view(out: Path, prefix: str, pv: PreparedView, pred: ViewPrediction, labels: np.ndarray,
               save_probs: bool, overwrite: bool) -> tuple[dict, np.ndarray]:
    """Write an accepted view's files; returns (its summary statistics, its label map on the input grid)."""
    v = pv.view
    stats = region_stats(labels, v.image, v.spacing_mm if v.spacing_mm else None)
    points, kp = _keypoint_rows(pv, pred)
    on_input = pv.frame.to_input(labels)
    pio.write_png(out / f"{prefix}_labels.png", on_input, overwrite)
    picture = overlay(v.image, labels, kp, pred.boxes, title=Path(prefix).name)
    pio.write_png(out / f"{prefix}_overlay.png", picture, overwrite)
    pio.write_json(out / f"{prefix}_keypoints.json", {**_info(pv), "keypoints": points}, overwrite)
    pio.write_json(out / f"{prefix}_stats.json", {**_info(pv), **stats}, overwrite)
    if save_probs:
        probs = pv.frame.to_input(pred.probs.astype(np.float16))
        probs[0][~pv.frame.to_input(np.ones(labels.shape, bool), fill=False)] = 1  # outside the view: background
        pio.write_npz(out / f"{prefix}_probs.npz", overwrite, probs=probs, classes=np.array(CLASSES))
    row = {k: round(stats[k], 6) for k in ("labelled_pixels", "image_counts", "skeletal_counts", "skeletal_share")}
    row.update({f"share_{n}": round(s["count_share"], 6) for n, s in stats["classes"].items()})
    return row, on_input


def write_flagged(out: Path, prefix: str, pv: PreparedView, reason: str, overwrite: bool,
                  pred: ViewPrediction | None = None, labels: np.ndarray | None = None) -> None:
    """A refused view: its overlay only (the map the model proposed, if any, drawn for checking)."""
    kp = _keypoint_rows(pv, pred)[1] if pred is not None else None
    title = f"{Path(prefix).name}: FLAG {reason}"
    picture = overlay(pv.view.image, labels, kp, None if pred is None else pred.boxes, title=title[:120])
    pio.write_png(out / f"{prefix}_overlay.png", picture, overwrite)


def confidence_fields(pred: ViewPrediction, found: np.ndarray | None) -> dict:
    """The keypoint columns of a row."""
    if pred.confidence is None:
        return {"keypoint_confidence": "", "keypoints_found": ""}
    return {"keypoint_confidence": round(float(pred.confidence.mean()), 6),
            "keypoints_found": "" if found is None else int(found.sum())}
