"""When ``predict.py`` refuses to answer: no body, low keypoint confidence, an impossible map.

A refused view is a ``summary.csv`` row with status ``flag`` and the reason, and only its
overlay is written (the scan and, for checking, the map the model proposed): nothing that feeds
a Bone Scan Index. Thresholds (``CheckOptions``, ``conf/predict.yaml``) were set on the phantom
and checked on the shared real scans and on noise (docs/predict.md, "Refusing to answer").

>>> import numpy as np
>>> lm = np.zeros((100, 20), np.uint8); lm[5:15] = 1; lm[80:95] = 12       # skull above femurs
>>> anatomy_order(lm, None, None, CheckOptions())
''
>>> anatomy_order(lm[::-1], None, None, CheckOptions())[:40]
'impossible anatomy: skull below femur (r'
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .anatomy import CLASS_IDS, CLASSES, KEYPOINT_IDS
from .data.io import body_found

#: (upper, lower) class pairs: the first lies above the second on every upright view.
CLASS_ORDER = [(a, b) for a, bs in {
    "skull": ("cervical_vertebrae", "thoracic_vertebrae", "rib", "clavicle", "scapula", "humerus",
              "lumbar_vertebrae", "sacrum", "pelvis", "femur"),
    "cervical_vertebrae": ("thoracic_vertebrae", "lumbar_vertebrae", "sacrum", "pelvis", "femur"),
    "thoracic_vertebrae": ("lumbar_vertebrae", "sacrum", "pelvis", "femur"),
    "lumbar_vertebrae": ("sacrum", "femur"),
    "clavicle": ("lumbar_vertebrae", "pelvis", "femur"), "rib": ("sacrum", "pelvis", "femur"),
    "sacrum": ("femur",), "pelvis": ("femur",), "humerus": ("femur",),
}.items() for b in bs]
#: (upper, lower) keypoint pairs, and (image-left, image-right) pairs (``_l`` has the smaller x).
KEYPOINT_ORDER = [("skull_top", "skull_base"), ("skull_base", "c7"), ("c7", "t12"), ("t12", "l5"),
                  ("l5", "sacrum_tip"), ("shoulder_l", "elbow_l"), ("shoulder_r", "elbow_r"),
                  ("hip_l", "knee_l"), ("hip_r", "knee_r"), ("iliac_l", "hip_l"), ("iliac_r", "hip_r"),
                  ("c7", "iliac_l"), ("c7", "iliac_r"), ("skull_base", "shoulder_l"), ("skull_base", "shoulder_r")]
KEYPOINT_SIDES = [(f"{n}_l", f"{n}_r") for n in ("shoulder", "hip", "knee", "iliac")]


@dataclass(frozen=True)
class CheckOptions:
    """refuse_unsure: apply the checks below (false: only no-body / low-count views are flagged).
    min_keypoint_confidence: a keypoint counts as found at this confidence;
    min_found_keypoints: fewer found keypoints (of 16, inside the view) = "low keypoint confidence";
    order_tolerance: slack of the vertical-order rules, as a fraction of the view height;
    min_class_share: a class takes part in the order rules from this share of the view's pixels."""

    refuse_unsure: bool = True
    min_keypoint_confidence: float = 0.5
    min_found_keypoints: int = 4
    order_tolerance: float = 0.02
    min_class_share: float = 0.0005


def screen(image: np.ndarray, min_total_counts: float) -> str:
    """'' for a view worth segmenting, else why it is flagged: low counts or no body (noise, empty)."""
    total = float(np.asarray(image, np.float64).sum())
    if total < min_total_counts:
        return f"low counts: {total:.0f} total < min_total_counts={min_total_counts:g}"
    if not body_found(image):
        return "no body found: the scan looks empty or noise only"
    return ""


def found_keypoints(confidence: np.ndarray, inside: np.ndarray, opts: CheckOptions) -> np.ndarray:
    """(K,) bool: confident keypoints inside the view."""
    return (np.asarray(confidence) >= opts.min_keypoint_confidence) & np.asarray(inside, bool)


def keypoint_confidence(confidence, inside, opts: CheckOptions) -> str:
    """'' or the reason: too few keypoints found (a body the model does not recognise)."""
    if confidence is None:
        return ""
    found = int(found_keypoints(confidence, inside, opts).sum())
    if found >= opts.min_found_keypoints:
        return ""
    return (f"low keypoint confidence: {found} of {len(confidence)} keypoints found (confidence >= "
            f"{opts.min_keypoint_confidence:g}; mean {float(np.mean(confidence)):.2f}), "
            f"fewer than min_found_keypoints={opts.min_found_keypoints}: not a body the model recognises")


def anatomy_order(labels: np.ndarray, keypoints, found, opts: CheckOptions) -> str:
    """'' or the reason: classes (centroid rows) or found keypoints out of their vertical order
    (skull > spine segments > pelvis > femurs...) or image sides swapped. labels (h, w) ids;
    keypoints (K, 2) x, y or None; found (K,) bool or None."""
    h = labels.shape[0]
    tol = opts.order_tolerance * h
    counts = np.bincount(labels.ravel(), minlength=len(CLASSES))
    rows = np.bincount(labels.ravel(), weights=np.repeat(np.arange(h, dtype=np.float64), labels.shape[1]),
                       minlength=len(CLASSES))
    present = counts >= max(4, opts.min_class_share * labels.size)
    centre = rows / np.maximum(counts, 1)
    wrong = []
    for a, b in CLASS_ORDER:
        i, j = CLASS_IDS[a], CLASS_IDS[b]
        if present[i] and present[j] and centre[i] > centre[j] + tol:
            wrong.append(f"{a} below {b} (rows {centre[i]:.0f} vs {centre[j]:.0f})")
    if keypoints is not None and found is not None:
        kp, ok = np.asarray(keypoints), np.asarray(found, bool)
        for a, b in KEYPOINT_ORDER:
            i, j = KEYPOINT_IDS[a], KEYPOINT_IDS[b]
            if ok[i] and ok[j] and kp[i, 1] > kp[j, 1] + tol:
                wrong.append(f"keypoint {a} below {b} (y {kp[i, 1]:.0f} vs {kp[j, 1]:.0f})")
        for a, b in KEYPOINT_SIDES:
            i, j = KEYPOINT_IDS[a], KEYPOINT_IDS[b]
            if ok[i] and ok[j] and kp[i, 0] > kp[j, 0] + tol / 4:
                wrong.append(f"keypoint {a} right of {b}")
    if not wrong:
        return ""
    more = f" and {len(wrong) - 2} more" if len(wrong) > 2 else ""
    return f"impossible anatomy: {'; '.join(wrong[:2])}{more}"


def check_prediction(labels: np.ndarray, keypoints, confidence, inside, opts: CheckOptions) -> str:
    """'' when the view's map may be reported, else the reason it is refused (first failing check)."""
    if not opts.refuse_unsure:
        return ""
    found = None if confidence is None else found_keypoints(confidence, inside, opts)
    return keypoint_confidence(confidence, inside, opts) or anatomy_order(labels, keypoints, found, opts)

