"""Prediction behind ``predict.py``: scans in; label maps, overlays, keypoints, uptake statistics out.

Per view (``<stem>_<view>_*``, names from the input's file name only): ``labels.png`` (uint8
ids), ``overlay.png``, ``keypoints.json``, ``stats.json``, optional ``probs.npz``; per DICOM
input an optional ``seg.dcm``; per run one ``summary.csv`` (docs/predict.md). A file that cannot
be read is a summary row with status ``error``; a view with no body or too few counts is a row
with status ``flag`` and only its overlay (no segmentation is claimed). Views are resized to the
model's input size and the outputs mapped back to the input's size and orientation.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from . import predict_io as pio
from .anatomy import BONE_CLASSES, CLASSES, FLIP_INDEX, KEYPOINTS, flip_keypoints, mirror_to_anterior
from .geometry.resize import resize_counts, scale_points
from .data.io import ScanView, body_found, is_dicom_file, read_views
from .checkpoint import CheckpointError
from .ensemble import load_models
from .postprocess import keep_largest_components
from .stats import region_stats
from .viz import overlay

log = logging.getLogger("bonepatch")
DEFAULT_SIZE = (1024, 256)
SUMMARY_FIELDS = ["input", "frame", "view", "status", "reason", "outputs", "height", "width", "spacing_mm",
                  "mirrored", "labelled_pixels", "image_counts", "skeletal_counts", "skeletal_share",
                  "keypoint_confidence"] + [f"share_{CLASSES[c]}" for c in BONE_CLASSES]


class PredictError(RuntimeError):
    """A problem that stops the whole run (bad options, nothing to read, results in the way)."""


@dataclass
class ViewPrediction:
    """One view's prediction at the input's size and orientation.

    probs (C, H, W) float32; keypoints (K, 2) x, y or None; confidence (K,) or None; boxes (R, 4, 2) or None.
    """

    probs: np.ndarray
    keypoints: np.ndarray | None
    confidence: np.ndarray | None
    boxes: np.ndarray | None

    @property
    def labels(self) -> np.ndarray:
        return self.probs.argmax(0).astype(np.uint8)  # (H, W)


def model_geometry(config: dict) -> tuple[tuple[int, int], bool]:
    """((H, W) the model was trained at, whether posterior views were mirrored) from a run config."""
    data = (config.get("data") or {}).get("train_dataset") or {}
    size = data.get("size") or [(data.get("config") or {}).get(k) for k in ("height", "width")]
    size = tuple(int(s) for s in size) if all(size) else DEFAULT_SIZE
    return size, bool(data.get("mirror_posterior", False))


class Predictor:
    """A model plus the view handling around it: resize, mirror, flip TTA, map back."""

    def __init__(self, model: torch.nn.Module, size=DEFAULT_SIZE, device="cpu", mirror_posterior=False,
                 tta_flip=False, batch_size=4):
        self.model, self.size, self.device = model.to(device).eval(), tuple(size), torch.device(device)
        self.mirror_posterior, self.tta_flip, self.batch_size = mirror_posterior, tta_flip, max(1, int(batch_size))

    def mirrored(self, view: ScanView) -> bool:
        """Whether the view is mirrored for the model (as the training data was)."""
        return mirror_to_anterior(view.view, view.flipped, self.mirror_posterior)

    def _input(self, view: ScanView) -> torch.Tensor:
        """(1, H, W) counts at the model's size (antialiased, total counts preserved)."""
        image = view.image[:, ::-1] if self.mirrored(view) else view.image
        x = torch.from_numpy(np.ascontiguousarray(image, np.float32))[None]  # (1, h, w)
        return resize_counts(x, self.size)

    @torch.no_grad()
    def _forward(self, x: torch.Tensor):
        """(B, 1, H, W) -> probs (B, C, H, W), keypoints (B, K, 2), confidence (B, K), boxes (B, R, 4, 2)."""
        out = self.model(x)
        probs, kp, conf = out.logits.float().softmax(1), out.keypoints, out.confidence
        if self.tta_flip:  # mirrored prediction mirrored back; keypoint pairs swapped
            f = self.model(x.flip(-1))
            probs = (probs + f.logits.float().softmax(1).flip(-1)) / 2
            if kp is not None:
                fk = flip_keypoints(f.keypoints, x.shape[-1])
                kp, conf = (kp + fk) / 2, (conf + f.confidence[:, FLIP_INDEX]) / 2
        return probs, kp, conf, out.boxes

    def _back(self, view: ScanView, probs, kp, conf, boxes) -> ViewPrediction:
        """One view's model outputs (model size) -> input size and orientation."""
        h, w = view.image.shape
        probs = F.interpolate(probs[None], size=(h, w), mode="bilinear", align_corners=False)[0]
        kp = None if kp is None else scale_points(kp.float(), self.size, (h, w)).cpu().numpy()
        boxes = None if boxes is None else scale_points(boxes.float(), self.size, (h, w)).cpu().numpy()
        conf = None if conf is None else conf.float().cpu().numpy()
        probs = probs.cpu().numpy()
        if self.mirrored(view):
            probs = probs[..., ::-1]
            kp = None if kp is None else flip_keypoints(kp, w)
            conf = None if conf is None else conf[list(FLIP_INDEX)]
            if boxes is not None:
                boxes = boxes[:, [1, 0, 3, 2]]  # corners stay clockwise from top-left
                boxes[..., 0] = w - 1 - boxes[..., 0]
        return ViewPrediction(np.ascontiguousarray(probs, np.float32), kp, conf, boxes)

    def __call__(self, views: list[ScanView]) -> list[ViewPrediction]:
        results = []
        for i in range(0, len(views), self.batch_size):
            chunk = views[i:i + self.batch_size]
            x = torch.stack([self._input(v) for v in chunk]).to(self.device)  # (B, 1, H, W)
            probs, kp, conf, boxes = self._forward(x)
            results += [self._back(v, probs[j], None if kp is None else kp[j], None if conf is None else conf[j],
                                   None if boxes is None else boxes[j]) for j, v in enumerate(chunk)]
        return results


def screen(view: ScanView, min_total_counts: float) -> str:
    """'' for a usable view, else why it is flagged."""
    total = float(view.image.sum())
    if total < min_total_counts:
        return f"low counts: {total:.0f} total < min_total_counts={min_total_counts:g}"
    if not body_found(view.image):
        return "no body found: the scan looks empty or noise only"
    return ""


def _view_outputs(out: Path, prefix: str, view: ScanView, pred: ViewPrediction, largest_component: bool,
                  save_probs: bool, overwrite: bool) -> tuple[dict, np.ndarray]:
    """Write one view's files; returns (its summary statistics, its label map (H, W))."""
    labels = pred.labels
    if largest_component:  # True: every class; a tuple of ids: those (the checkpoint's choice)
        labels = keep_largest_components(labels, None if largest_component is True else largest_component)
    spacing = view.spacing_mm if view.spacing_mm else None
    stats = region_stats(labels, view.image, spacing)
    kp = None if pred.keypoints is None else np.concatenate([pred.keypoints, pred.confidence[:, None]], 1)
    pio.write_png(out / f"{prefix}_labels.png", labels, overwrite)
    picture = overlay(view.image, labels, kp, pred.boxes, title=Path(prefix).name)
    pio.write_png(out / f"{prefix}_overlay.png", picture, overwrite)
    points = [] if kp is None else [{"name": n, "x": float(p[0]), "y": float(p[1]), "confidence": float(p[2])}
                                    for n, p in zip(KEYPOINTS, kp)]
    info = {"view": view.view, "frame": view.frame, "image_size": list(view.image.shape)}
    pio.write_json(out / f"{prefix}_keypoints.json", {**info, "keypoints": points}, overwrite)
    pio.write_json(out / f"{prefix}_stats.json", {**info, **stats}, overwrite)
    if save_probs:
        pio.write_npz(out / f"{prefix}_probs.npz", overwrite, probs=pred.probs.astype(np.float16),
                      classes=np.array(CLASSES))
    row = {k: round(stats[k], 6) for k in ("labelled_pixels", "image_counts", "skeletal_counts", "skeletal_share")}
    row["keypoint_confidence"] = "" if kp is None else round(float(kp[:, 2].mean()), 6)
    row.update({f"share_{n}": round(s["count_share"], 6) for n, s in stats["classes"].items()})
    return row, labels


def predict(ckpt, inputs, output, device="auto", batch_size=4, progress=True, force_dicom=False, tta_flip=False,
            largest_component=False, overwrite=False, save_probs=False, dicom_seg=False, trust_checkpoint=False,
            min_total_counts=1000.0) -> list[dict]:
    """Predict every view of ``inputs`` into ``output``; returns the summary rows (also in summary.csv).

    Raises CheckpointError (not a usable checkpoint) or PredictError (nothing to do, results
    in the way, highdicom missing); a bad input file is a summary row, never an exception.
    """
    out = Path(output)
    if (out / "summary.csv").exists() and not overwrite:
        raise PredictError(f"{out} already holds results (summary.csv); pass overwrite=true to replace "
                           "them or choose another output folder")
    if dicom_seg:
        try:
            pio.require_highdicom()  # before any work
        except ImportError as err:
            raise PredictError(str(err)) from err
    model, config, chosen = load_models(ckpt, trust=trust_checkpoint)  # a checkpoint, a list or a folder: ensemble
    largest_component = True if largest_component else chosen  # chosen: the classes post-processing on validation picked
    size, mirror = model_geometry(config)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    predictor = Predictor(model, size, device, mirror, tta_flip, batch_size)
    files, missing, skipped = pio.collect_inputs(inputs, exclude=out)
    if not files and not missing:
        raise PredictError(f"no input files found in {inputs}; give a file, a folder, a glob or a list")
    log.info("%d files, model %s at %dx%d on %s%s", len(files), type(model).__name__, *size, device,
             f" ({skipped} folder files with other suffixes skipped)" if skipped else "")
    rows = [{"input": s, "status": "error", "reason": "no such file, folder or glob match"} for s in missing]
    stems = pio.output_stems(files)
    pending: list[tuple[Path, list[ScanView], list[str]]] = []  # file, its views, why each is flagged

    def flush():
        preds = iter(predictor([v for _, vs, why in pending for v, r in zip(vs, why) if not r]))
        for f, vs, why in pending:
            tags, labels = pio.view_tags([v.view for v in vs]), [None] * len(vs)
            for i, v in enumerate(vs):
                prefix = f"{stems[f]}_{tags[i]}"
                row = {"input": str(f), "frame": v.frame, "view": v.view, "height": v.image.shape[0],
                       "width": v.image.shape[1], "spacing_mm": v.spacing_mm or "", "mirrored": predictor.mirrored(v),
                       "status": "flag" if why[i] else "ok", "reason": why[i], "outputs": prefix}
                try:
                    if why[i]:  # flagged: the scan alone, to look at, and no segmentation claimed
                        pio.write_png(out / f"{prefix}_overlay.png",
                                      overlay(v.image, title=f"{Path(prefix).name}: {why[i]}"), overwrite)
                    else:
                        stats, labels[i] = _view_outputs(out, prefix, v, next(preds), largest_component,
                                                         save_probs, overwrite)
                        row.update(stats)
                except (OSError, ValueError) as err:
                    row.update(status="error", reason=f"writing outputs failed: {err}")
                rows.append(row)
            if dicom_seg and is_dicom_file(f) and any(m is not None for m in labels):
                try:
                    pio.write_dicom(out / f"{stems[f]}_seg.dcm", pio.dicom_seg(f, labels), overwrite)
                except pio.SegNotPossible as err:  # a documented limit: a note, the labels are written
                    for r in rows[-len(vs):]:
                        r["reason"] = "; ".join(filter(None, [r["reason"], str(err)]))
                except Exception as err:  # noqa: BLE001 - a failed SEG must not stop the batch
                    rows.append({"input": str(f), "status": "error", "reason": f"DICOM SEG failed: {err}"})
        pending.clear()

    try:
        for f in tqdm(files, desc="predict", unit="file", disable=not progress):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # "no body found": screened below
                    views = read_views(f, force=force_dicom)
            except Exception as err:  # noqa: BLE001 - any unreadable file is a row, not a crash
                rows.append({"input": str(f), "status": "error", "reason": str(err)})
                continue
            pending.append((f, views, [screen(v, min_total_counts) for v in views]))
            if sum(len(vs) for _, vs, _ in pending) >= predictor.batch_size:
                flush()
        flush()
    finally:  # also after Ctrl-C: what was done is listed, in input order
        order = {str(f): i for i, f in enumerate(files)}
        rows.sort(key=lambda r: (order.get(r["input"], -1), r.get("frame", 0)))
        pio.write_csv(out / "summary.csv", rows, SUMMARY_FIELDS, overwrite=True)
    return rows


def run(cfg) -> int:
    """``predict.py``: 0 when every view is ok or flagged, 1 when any input failed, 2 when nothing ran."""
    try:
        rows = predict(cfg.ckpt, cfg.input, cfg.output, cfg.device, cfg.batch_size, cfg.progress, cfg.force_dicom,
                       cfg.tta_flip, cfg.largest_component, cfg.overwrite, cfg.save_probs, cfg.dicom_seg,
                       cfg.trust_checkpoint, cfg.min_total_counts)
    except (CheckpointError, PredictError) as err:
        log.error("%s", err)
        return 2
    counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "flag", "error")}
    log.info("%d ok, %d flagged, %d errors; summary: %s", *counts.values(), Path(cfg.output) / "summary.csv")
    for r in rows:
        if r["status"] != "ok":
            log.warning("%s %s: %s", r["status"], r["input"], r["reason"])
    return 1 if counts["error"] else 0
