"""Per-region uptake statistics of one view: pixels, area, counts, share, left/right split.

Sides are IMAGE sides (``left`` = smaller x), as in ``bonepatch.anatomy``, split by the spine
midline (``anatomy.side_masks``); they are patient sides only once the view's orientation is known.

>>> lm = np.zeros((4, 4), np.int64); lm[:2] = 1; lm[3, :] = 12
>>> s = region_stats(lm, np.ones((4, 4)), spacing_mm=10.0)
>>> s["labelled_pixels"], s["classes"]["skull"]["pixels"], s["classes"]["skull"]["area_cm2"]
(12, 8, 8.0)
>>> round(sum(c["count_share"] for c in s["classes"].values()), 6)
1.0
"""
from __future__ import annotations

import math

import numpy as np

from .anatomy import BONE_CLASSES, CLASSES, PAIRED_CLASSES, side_masks


def _part(mask: np.ndarray, image: np.ndarray, pixel_cm2: float | None, skeletal: float) -> dict:
    """Statistics of the pixels in ``mask`` (H, W) bool over ``image`` (H, W) counts."""
    n = int(mask.sum())
    total = float(image[mask].sum())
    return {"pixels": n,
            "area_cm2": None if pixel_cm2 is None else n * pixel_cm2,
            "total_counts": total,
            "mean_counts": total / n if n else 0.0,
            "count_share": total / skeletal if skeletal > 0 else 0.0}


def region_stats(label_map: np.ndarray, image: np.ndarray, spacing_mm: float | None = None) -> dict:
    """Statistics of every bone class of ``label_map`` over the counts of ``image``.

    Args:
        label_map: (H, W) ids of ``anatomy.CLASSES``. image: (H, W) counts (>= 0), same size.
        spacing_mm: square pixel size in mm, or None / nan when unknown (areas are then None).

    Returns:
        ``{"image_counts", "skeletal_counts", "skeletal_share", "labelled_pixels", "spacing_mm",
        "classes": {name: {pixels, area_cm2, total_counts, mean_counts, count_share
        [, "left": {...}, "right": {...}] }}}``: ``count_share`` is the class's share of all
        skeletal (labelled) counts, so the shares of the classes sum to 1 when anything is
        labelled; a side's ``count_share`` is its share of the skeletal counts too, so
        ``left + right == class``. Paired classes (``anatomy.PAIRED_CLASSES``) carry the sides.
    """
    label_map, image = np.asarray(label_map), np.asarray(image, np.float64)
    if label_map.shape != image.shape:
        raise ValueError(f"label map {label_map.shape} and image {image.shape} differ in size; "
                         "compute statistics at the image's own resolution")
    known = spacing_mm is not None and math.isfinite(spacing_mm) and spacing_mm > 0
    pixel_cm2 = (spacing_mm / 10.0) ** 2 if known else None
    bone = label_map > 0
    skeletal, total = float(image[bone].sum()), float(image.sum())
    left, right = side_masks(label_map)
    classes = {}
    for c in BONE_CLASSES:
        mask = label_map == c
        entry = _part(mask, image, pixel_cm2, skeletal)
        if c in PAIRED_CLASSES:
            entry["left"] = _part(mask & left, image, pixel_cm2, skeletal)
            entry["right"] = _part(mask & right, image, pixel_cm2, skeletal)
        classes[CLASSES[c]] = entry
    return {"image_counts": total, "skeletal_counts": skeletal,
            "skeletal_share": skeletal / total if total > 0 else 0.0,
            "labelled_pixels": int(bone.sum()), "spacing_mm": spacing_mm if known else None,
            "classes": classes}
