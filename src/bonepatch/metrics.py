"""Metrics: per-class Dice (torchmetrics) and keypoint NME / PCK normalised by body height."""
from __future__ import annotations

import torch
from torchmetrics import Metric, MetricCollection
from torchmetrics.segmentation import DiceScore

from .anatomy import CLASSES, NUM_CLASSES


def body_height(keypoints: torch.Tensor) -> torch.Tensor:
    """Vertical extent of the visible true keypoints, (B,K,3) -> (B,), at least 1 px.

    Used to normalise keypoint errors (skull top to knees on a full scan).
    """
    vis = keypoints[..., 2] > 0
    y = keypoints[..., 1]
    hi = torch.where(vis, y, torch.full_like(y, -torch.inf)).amax(-1)
    lo = torch.where(vis, y, torch.full_like(y, torch.inf)).amin(-1)
    return torch.nan_to_num(hi - lo, nan=1.0, posinf=1.0, neginf=1.0).clamp_min(1.0)


def keypoint_errors(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Distance / body height of each keypoint: pred (B,K,2+), target (B,K,3) -> (B,K)."""
    return (pred[..., :2] - target[..., :2]).norm(dim=-1) / body_height(target)[:, None]


class KeypointMetrics(Metric):
    """NME (mean error / body height) and PCK at given thresholds over visible keypoints.

    update(pred (B,K,2), target (B,K,3)); compute() -> {"nme", "pck@0.02", "pck@0.05"}.
    """

    full_state_update = False

    def __init__(self, thresholds=(0.02, 0.05), **kwargs):
        super().__init__(**kwargs)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.add_state("err_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("hits", torch.zeros(len(self.thresholds), dtype=torch.float64),
                       dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        err = keypoint_errors(pred, target)[target[..., 2] > 0].double()  # visible ones
        self.err_sum += err.sum()
        self.count += err.numel()
        self.hits += torch.stack([(err <= t).sum() for t in self.thresholds]).double()

    def compute(self) -> dict[str, torch.Tensor]:
        n = self.count.clamp_min(1)
        out = {"nme": (self.err_sum / n).float()}
        out.update({f"pck@{t:g}": (h / n).float() for t, h in zip(self.thresholds, self.hits)})
        return out


def dice_metric() -> DiceScore:
    """Per-image Dice of each bone class (background excluded), averaged over the images where
    the class is present in the truth or the prediction; compute() -> (12,)."""
    return DiceScore(num_classes=NUM_CLASSES, include_background=False, average="none",
                     aggregation_level="samplewise", input_format="index")


def dice_dict(per_class: torch.Tensor) -> dict[str, float]:
    """(12,) per-class Dice -> {"dice_<class>": value, ..., "dice_mean": mean over present classes}."""
    out = {f"dice_{name}": float(v) for name, v in zip(CLASSES[1:], per_class)}
    valid = per_class[~torch.isnan(per_class)]
    out["dice_mean"] = float(valid.mean()) if valid.numel() else float("nan")
    return out


def make_metrics() -> MetricCollection:
    """The segmentation and keypoint metrics of one split."""
    return MetricCollection({"dice": dice_metric(), "kp": KeypointMetrics()})
