"""Post-processing chosen on validation, as nnU-Net does: keep the largest connected piece of a
class only for the classes where that raises the validation Dice.

The choice (``{"largest_component": [class names], "dice_raw": {...}, "dice_largest": {...}}``)
is made by :class:`PostprocessSelector` after training (``bonepatch.train``), stored in the
checkpoint (``checkpoint.set_postprocess``) and applied by ``predict.py``; a checkpoint without
it means no post-processing.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch
from scipy import ndimage

from .anatomy import CLASS_IDS, CLASSES, PAIRED_CLASSES, side_masks
from .metrics import dice_metric


def keep_largest_components(label_map: np.ndarray, classes: Iterable[int] | None = None) -> np.ndarray:
    """(H, W) ids with only the largest 8-connected piece of each class in ``classes`` (None = all;
    of each side for the paired classes, split by ``anatomy.side_masks``); the rest becomes background."""
    out = label_map.copy()
    wanted = None if classes is None else {int(c) for c in classes}
    present = [c for c in np.unique(label_map[label_map > 0]) if wanted is None or int(c) in wanted]
    if not present:
        return out
    sides = side_masks(label_map)
    for c in present:
        for side in (sides if c in PAIRED_CLASSES else (None,)):
            mask = (label_map == c) if side is None else (label_map == c) & side
            pieces, n = ndimage.label(mask, structure=np.ones((3, 3)))
            if n > 1:
                largest = np.bincount(pieces.ravel())[1:].argmax() + 1
                out[(pieces > 0) & (pieces != largest)] = 0
    return out


def apply_postprocess(labels: torch.Tensor, classes: Iterable[int]) -> torch.Tensor:
    """keep_largest_components over a batch of label maps (B, H, W) (returned on their device)."""
    classes = list(classes)
    if not classes:
        return labels
    done = [keep_largest_components(m, classes) for m in labels.detach().cpu().numpy()]
    return torch.from_numpy(np.stack(done)).to(labels.device)


def chosen_classes(entry: dict | None) -> tuple[int, ...]:
    """Class ids of a stored choice (None or no entry: none)."""
    return tuple(CLASS_IDS[n] for n in (entry or {}).get("largest_component", []))


def choose(dice_raw: dict[str, float], dice_largest: dict[str, float]) -> list[str]:
    """Classes whose Dice rises with keep-largest-component (NaN: class never seen: not chosen)."""
    return [n for n in CLASSES[1:] if not math.isnan(dice_raw.get(n, math.nan))
            and not math.isnan(dice_largest.get(n, math.nan)) and dice_largest[n] > dice_raw[n]]


def combine(entries: list[dict | None]) -> list[str]:
    """The choice for an ensemble: classes whose Dice gain, averaged over the members' validation
    results (a member without a stored choice counts as no gain), is positive."""
    chosen = []
    for n in CLASSES[1:]:
        gains = [e["dice_largest"][n] - e["dice_raw"][n] if e and "dice_raw" in e else 0.0 for e in entries]
        gains = [g for g in gains if not math.isnan(g)]
        if gains and sum(gains) / len(gains) > 0:
            chosen.append(n)
    return chosen


class PostprocessSelector:
    """Per-class Dice of validation predictions with and without keep-largest-component.

    ``update(pred (B,H,W) ids, target (B,H,W))``; ``compute()`` -> the stored choice dict.
    """

    def __init__(self):
        self.raw, self.largest = dice_metric(), dice_metric()

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        if self.raw.device != pred.device:  # metric states live where the predictions are
            self.raw, self.largest = self.raw.to(pred.device), self.largest.to(pred.device)
        self.raw.update(pred, target)
        self.largest.update(apply_postprocess(pred, range(1, len(CLASSES))), target)

    def compute(self) -> dict:
        raw = {n: float(v) for n, v in zip(CLASSES[1:], self.raw.compute())}
        largest = {n: float(v) for n, v in zip(CLASSES[1:], self.largest.compute())}
        chosen = choose(raw, largest)
        final = [largest[n] if n in chosen else raw[n] for n in CLASSES[1:]]
        final = [v for v in final if not math.isnan(v)]
        return {"largest_component": chosen, "chosen_on": "validation", "dice_raw": raw, "dice_largest": largest,
                "dice_mean_postprocessed": sum(final) / len(final) if final else math.nan}
