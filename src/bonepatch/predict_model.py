"""The model side of ``predict.py``: a model plus the view handling around it.

``Predictor(model, size, ...)(views, fits)``: each view is mirrored when the model was trained
on mirrored posterior views, placed in the model's frame by its letterbox (one scale factor,
padding or cropping; never stretched: ``geometry.resize``), run (optionally with flip TTA), and
every output is mapped back exactly to the view's own pixels and orientation. The model is any
``nn.Module`` returning ``PipelineOutput`` (docs/CONTRACTS.md), so a wrapper that averages
several models fits in unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .anatomy import FLIP_INDEX, flip_keypoints, mirror_to_anterior
from .data.io import ScanView
from .geometry.resize import Letterbox, fit_letterbox, letterbox, unletterbox, unletterbox_points

DEFAULT_SIZE = (1024, 256)


@dataclass
class ViewPrediction:
    """One view's prediction at the view's size and orientation.

    probs (C, H, W) float32; keypoints (K, 2) x, y or None; confidence (K,) or None; boxes (R, 4, 2)
    or None. inside (K,) bool: the keypoint lies in the view (not in padding beyond its edges).
    """

    probs: np.ndarray
    keypoints: np.ndarray | None
    confidence: np.ndarray | None
    boxes: np.ndarray | None
    inside: np.ndarray | None = None

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
    """A model plus the view handling around it: mirror, letterbox, flip TTA, map back."""

    def __init__(self, model: torch.nn.Module, size=DEFAULT_SIZE, device="cpu", mirror_posterior=False,
                 tta_flip=False, batch_size=4):
        self.model, self.size, self.device = model.to(device).eval(), tuple(size), torch.device(device)
        self.mirror_posterior, self.tta_flip, self.batch_size = mirror_posterior, tta_flip, max(1, int(batch_size))

    @classmethod
    def from_checkpoint(cls, ckpt, device="auto", trust=False, **kwargs) -> tuple["Predictor", dict, tuple[int, ...]]:
        """(Predictor of the checkpoint's model at its training size, the run config, the class ids
        whose post-processing validation chose). ``ckpt``: a file, ``default`` (the shipped
        weights), a list or a folder of checkpoints (their ensemble, ``bonepatch.ensemble``)."""
        from .ensemble import load_models

        model, config, chosen = load_models(ckpt, trust=trust)
        size, mirror = model_geometry(config)
        device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        return cls(model, size, device, mirror, **kwargs), config, chosen

    def mirrored(self, view: ScanView) -> bool:
        """Whether the view is mirrored for the model (as the training data was)."""
        return mirror_to_anterior(view.view, view.flipped, self.mirror_posterior)

    def fit(self, view: ScanView) -> Letterbox:
        """The default placement: the largest undistorted fit, centred."""
        return fit_letterbox(view.image.shape, self.size)

    def _input(self, view: ScanView, box: Letterbox) -> torch.Tensor:
        """(1, H, W) counts in the model's frame (antialiased, total counts preserved, zero padding)."""
        image = view.image[:, ::-1] if self.mirrored(view) else view.image
        x = torch.from_numpy(np.ascontiguousarray(image, np.float32))[None]  # (1, h, w)
        return letterbox(x, box)

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

    def _back(self, view: ScanView, box: Letterbox, probs, kp, conf, boxes) -> ViewPrediction:
        """One view's model outputs (model frame) -> the view's size and orientation."""
        h, w = view.image.shape
        probs = unletterbox(probs, box)  # (C, h, w); parts cropped away: no class yet
        probs[0] += (1 - probs.sum(0)).clamp_min(0)  # ... so background there
        kp = None if kp is None else unletterbox_points(kp.float(), box).cpu().numpy()
        boxes = None if boxes is None else unletterbox_points(boxes.float(), box).cpu().numpy()
        conf = None if conf is None else conf.float().cpu().numpy()
        probs = probs.cpu().numpy()
        if self.mirrored(view):
            probs = probs[..., ::-1]
            kp = None if kp is None else flip_keypoints(kp, w)
            conf = None if conf is None else conf[list(FLIP_INDEX)]
            if boxes is not None:
                boxes = boxes[:, [1, 0, 3, 2]]  # corners stay clockwise from top-left
                boxes[..., 0] = w - 1 - boxes[..., 0]
        inside = None if kp is None else ((kp[:, 0] >= -0.5) & (kp[:, 0] <= w - 0.5)
                                          & (kp[:, 1] >= -0.5) & (kp[:, 1] <= h - 0.5))
        return ViewPrediction(np.ascontiguousarray(probs, np.float32), kp, conf, boxes, inside)

    def __call__(self, views: list[ScanView], fits: list[Letterbox] | None = None) -> list[ViewPrediction]:
        """Predictions of ``views``; ``fits`` their letterboxes (None: :meth:`fit` of each)."""
        fits = [self.fit(v) for v in views] if fits is None else list(fits)
        results = []
        for i in range(0, len(views), self.batch_size):
            chunk, boxes_in = views[i:i + self.batch_size], fits[i:i + self.batch_size]
            x = torch.stack([self._input(v, b) for v, b in zip(chunk, boxes_in)]).to(self.device)  # (B, 1, H, W)
            probs, kp, conf, boxes = self._forward(x)
            for j, (v, b) in enumerate(zip(chunk, boxes_in)):
                results.append(self._back(v, b, probs[j], None if kp is None else kp[j],
                                          None if conf is None else conf[j], None if boxes is None else boxes[j]))
        return results
