"""Anatomy shared by every stage: label ids, keypoints, flip pairs, region patches.

Conventions (docs/DESIGN.md): coordinates are pixels (x, y), x to the right, y down, the centre of
pixel ``[row, col]`` is at ``(x=col, y=row)``. ``_l`` / ``_r`` are IMAGE sides (``_l`` = smaller x).

>>> NUM_CLASSES, NUM_KEYPOINTS
(13, 16)
>>> CLASS_IDS["femur"], KEYPOINT_IDS["knee_r"], FLIP_INDEX[KEYPOINT_IDS["hip_l"]]
(12, 13, 11)
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

#: Label ids of the public 12-region whole-body bone scan masks (0 = background).
CLASSES: tuple[str, ...] = (
    "background", "skull", "cervical_vertebrae", "thoracic_vertebrae", "rib", "sternum",
    "clavicle", "scapula", "humerus", "lumbar_vertebrae", "sacrum", "pelvis", "femur",
)
NUM_CLASSES = len(CLASSES)
BONE_CLASSES: tuple[int, ...] = tuple(range(1, NUM_CLASSES))


class _NamedIds(dict):
    """A name -> id dict whose KeyError lists the valid names."""

    def __init__(self, names, what):
        super().__init__((n, i) for i, n in enumerate(names))
        self._what = what

    def __missing__(self, key):
        raise KeyError(f"unknown {self._what} {key!r}; choose one of {sorted(self)}")


CLASS_IDS = _NamedIds(CLASSES, "class")
SPINE_CLASSES = tuple(CLASS_IDS[n] for n in
                      ("cervical_vertebrae", "thoracic_vertebrae", "lumbar_vertebrae", "sacrum"))
#: Classes that come in a left and a right copy (statistics split them by the spine midline).
PAIRED_CLASSES = tuple(CLASS_IDS[n] for n in
                       ("rib", "clavicle", "scapula", "humerus", "pelvis", "femur"))

KEYPOINTS: tuple[str, ...] = (
    "skull_top", "skull_base", "c7", "t12", "l5", "sacrum_tip",
    "shoulder_l", "shoulder_r", "elbow_l", "elbow_r", "hip_l", "hip_r",
    "knee_l", "knee_r", "iliac_l", "iliac_r",
)
NUM_KEYPOINTS = len(KEYPOINTS)
KEYPOINT_IDS = _NamedIds(KEYPOINTS, "keypoint")
FLIP_PAIRS: tuple[tuple[int, int], ...] = tuple(
    (KEYPOINT_IDS[n], KEYPOINT_IDS[n[:-2] + "_r"]) for n in KEYPOINTS if n.endswith("_l"))
#: ``keypoints[FLIP_INDEX]`` swaps every _l/_r pair (use after a horizontal flip).
FLIP_INDEX: tuple[int, ...] = tuple(
    dict(FLIP_PAIRS).get(i, {b: a for a, b in FLIP_PAIRS}.get(i, i)) for i in range(NUM_KEYPOINTS))

#: Colours (RGB) of the public masks' palette, for overlays and legends.
PALETTE: dict[str, tuple[int, int, int]] = {
    "background": (0, 0, 0), "skull": (190, 230, 40), "cervical_vertebrae": (40, 110, 230),
    "thoracic_vertebrae": (150, 230, 235), "rib": (170, 80, 200), "sternum": (240, 130, 190),
    "clavicle": (150, 95, 50), "scapula": (150, 25, 35), "humerus": (40, 40, 160),
    "lumbar_vertebrae": (245, 230, 40), "sacrum": (245, 140, 30), "pelvis": (40, 170, 60),
    "femur": (220, 170, 30),
}


@dataclass(frozen=True)
class RegionPatch:
    """One keypoint-driven region patch: the keypoints that span it, the classes it may predict.

    ``margin``: optional per-side margins ``{left, top, right, bottom}`` (fractions of the keypoint
    extent; sides not given use the model's global ``margin``), for regions whose bones reach past
    their keypoints on one side (the lower ribs hang below T12).
    """

    name: str
    keypoints: tuple[str, ...]
    classes: tuple[str, ...]
    margin: tuple[tuple[str, float], ...] = ()

    SIDES = ("left", "top", "right", "bottom")

    def __post_init__(self):
        for k in self.keypoints:
            KEYPOINT_IDS[k]  # KeyError listing the options
        for c in self.classes:
            CLASS_IDS[c]
        margin = dict(self.margin.items() if isinstance(self.margin, Mapping) else self.margin)
        bad = set(margin) - set(self.SIDES)
        if bad:
            raise KeyError(f"patch {self.name!r}: margin sides {sorted(bad)} unknown; use {self.SIDES}")
        if any(not 0 <= float(v) < 10 for v in margin.values()):
            raise ValueError(f"patch {self.name!r}: margins must be in [0, 10), got {margin}")
        object.__setattr__(self, "margin", tuple((k, float(margin[k])) for k in self.SIDES if k in margin))

    def margins(self, default: float) -> tuple[float, float, float, float]:
        """(left, top, right, bottom) margins, ``default`` for the sides not set."""
        m = dict(self.margin)
        return tuple(m.get(side, float(default)) for side in self.SIDES)

    @property
    def keypoint_ids(self) -> list[int]:
        return [KEYPOINT_IDS[k] for k in self.keypoints]

    @property
    def class_ids(self) -> list[int]:
        return [CLASS_IDS[c] for c in self.classes]


#: The default patch set (the Hydra config ``conf/patches/default.yaml`` mirrors it).
DEFAULT_PATCHES: tuple[RegionPatch, ...] = (
    RegionPatch("head", ("skull_top", "skull_base", "c7"), ("skull", "cervical_vertebrae")),
    RegionPatch("thorax", ("c7", "t12", "shoulder_l", "shoulder_r"),
                ("thoracic_vertebrae", "rib", "sternum", "clavicle", "scapula", "humerus"),
                margin=(("bottom", 0.45),)),
    RegionPatch("pelvis", ("t12", "l5", "sacrum_tip", "iliac_l", "iliac_r", "hip_l", "hip_r"),
                ("lumbar_vertebrae", "sacrum", "pelvis", "femur")),
    RegionPatch("arm_l", ("shoulder_l", "elbow_l"), ("humerus", "scapula", "clavicle")),
    RegionPatch("arm_r", ("shoulder_r", "elbow_r"), ("humerus", "scapula", "clavicle")),
    RegionPatch("thigh_l", ("hip_l", "knee_l"), ("femur", "pelvis")),
    RegionPatch("thigh_r", ("hip_r", "knee_r"), ("femur", "pelvis")),
)


def as_patches(spec) -> tuple[RegionPatch, ...]:
    """Region patches from a config list of ``{name, keypoints, classes}`` (or RegionPatch)."""
    if spec is None:
        return DEFAULT_PATCHES
    return tuple(p if isinstance(p, RegionPatch) else
                 RegionPatch(str(p["name"]), tuple(p["keypoints"]), tuple(p["classes"]),
                             tuple(dict(p.get("margin") or {}).items()))
                 for p in spec)


def spine_midline(label_map: np.ndarray) -> tuple[float, float] | None:
    """Least-squares line ``x = a * y + b`` through the per-row centres of the spine classes.

    Returns ``(a, b)``, or None when fewer than 2 spine rows are labelled.
    """
    spine = np.isin(label_map, SPINE_CLASSES)
    rows = np.flatnonzero(spine.any(1))
    if len(rows) < 2:
        return None
    xs = np.arange(label_map.shape[1])
    centres = (spine[rows] * xs).sum(1) / spine[rows].sum(1)
    if np.ptp(rows) < 10:  # too short to fit a slope reliably
        return 0.0, float(np.median(centres))
    a, b = np.polyfit(rows, centres, 1)
    return float(a), float(b)


def side_masks(label_map: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks of the image-left (smaller x) and image-right half of the body.

    Split by the spine midline; without a spine, by the centre of all labelled pixels.
    """
    h, w = label_map.shape
    line = spine_midline(label_map)
    if line is None:
        cols = np.flatnonzero((label_map > 0).any(0))
        line = (0.0, float(cols.mean()) if len(cols) else (w - 1) / 2)
    yy, xx = np.mgrid[0:h, 0:w]
    left = xx < line[0] * yy + line[1]
    return left, ~left


def _end(mask: np.ndarray, top: bool, band: int = 2, min_pixels: int = 4) -> tuple[float, float, float]:
    """(x, y, vis) of the top or bottom end of ``mask``.

    y is the extreme row; x the mean column of the pixels within ``band`` rows of it.
    vis is 0 when the mask has under ``min_pixels`` pixels or the end touches the image's top or
    bottom edge (the bone is cut off there, so its true end is outside the image).
    """
    rows = np.flatnonzero(mask.any(1))
    if mask.sum() < min_pixels:
        return 0.0, 0.0, 0.0
    y = rows[0] if top else rows[-1]
    sel = slice(y, y + band + 1) if top else slice(max(y - band, 0), y + 1)
    cols = np.nonzero(mask[sel])[1]
    vis = 0.0 if y in (0, mask.shape[0] - 1) else 1.0
    return float(cols.mean()), float(y), vis


def keypoints_from_mask(label_map: np.ndarray) -> np.ndarray:
    """The 16 keypoints of docs/DESIGN.md derived from a label map.

    Args:
        label_map: (H, W) integer array with the ids of ``CLASSES``.

    Returns:
        (K, 3) float32 array of x, y, vis (vis 0 when the bone is absent or cut by the image edge;
        x = y = 0 when it is absent).

    >>> lm = np.zeros((64, 32), np.int64); lm[5:20, 10:22] = CLASS_IDS["skull"]
    >>> lm[20:30, 15:17] = CLASS_IDS["cervical_vertebrae"]
    >>> kp = keypoints_from_mask(lm); kp.shape, kp[KEYPOINT_IDS["skull_top"]].tolist()
    ((16, 3), [15.5, 5.0, 1.0])
    """
    label_map = np.asarray(label_map)
    if label_map.ndim != 2:
        raise ValueError(f"keypoints_from_mask wants an (H, W) label map, got shape {label_map.shape}")
    c = CLASS_IDS
    is_ = {name: label_map == c[name] for name in CLASSES[1:]}
    out = np.zeros((NUM_KEYPOINTS, 3), np.float32)

    def first(*candidates):
        for mask, top in candidates:
            x, y, v = _end(mask, top)
            if mask.sum() >= 4:
                return x, y, v
        return 0.0, 0.0, 0.0

    k = KEYPOINT_IDS
    out[k["skull_top"]] = first((is_["skull"], True))
    out[k["skull_base"]] = first((is_["cervical_vertebrae"], True), (is_["skull"], False))
    out[k["c7"]] = first((is_["cervical_vertebrae"], False), (is_["thoracic_vertebrae"], True))
    out[k["t12"]] = first((is_["thoracic_vertebrae"], False), (is_["lumbar_vertebrae"], True))
    out[k["l5"]] = first((is_["lumbar_vertebrae"], False), (is_["sacrum"], True))
    out[k["sacrum_tip"]] = first((is_["sacrum"], False))
    left, right = side_masks(label_map)
    for side, half in (("l", left), ("r", right)):
        out[k[f"shoulder_{side}"]] = first((is_["humerus"] & half, True))
        out[k[f"elbow_{side}"]] = first((is_["humerus"] & half, False))
        out[k[f"hip_{side}"]] = first((is_["femur"] & half, True))
        out[k[f"knee_{side}"]] = first((is_["femur"] & half, False))
        out[k[f"iliac_{side}"]] = first((is_["pelvis"] & half, True))
    return out


def swap_sides(keypoints):
    """Keypoints (..., K, C) numpy or torch with every _l/_r pair swapped (a copy; coordinates kept).

    Use after a geometric transform that already mirrored the coordinates.
    """
    return keypoints[..., list(FLIP_INDEX), :]


def flip_keypoints(keypoints, width: int):
    """Keypoints (..., K, C>=2), numpy or torch, after a horizontal flip of an image ``width`` wide.

    x -> width - 1 - x (pixel centres at integers) and every _l/_r pair swapped; the one rule for
    keypoint flips (datasets, augmentation, flip TTA, mirrored posterior views).

    >>> flip_keypoints(np.array([[0., 5., 1.]] * NUM_KEYPOINTS), 256)[KEYPOINT_IDS["hip_l"]].tolist()
    [255.0, 5.0, 1.0]
    """
    if not hasattr(keypoints, "shape"):
        keypoints = np.asarray(keypoints, np.float32)
    out = swap_sides(keypoints)
    out[..., 0] = width - 1 - out[..., 0]
    return out


def mirror_to_anterior(view: str, stored_flipped: bool, mirror_posterior: bool) -> bool:
    """The one rule for "mirrored": a view is mirrored left-right for the model when the run mirrors
    posterior views (``mirror_posterior``), the view is posterior and it is stored mirrored with
    respect to the anterior orientation (``stored_flipped``: the gamma-camera display habit,
    ``ScanView.flipped``; the phantom renders posterior views that way).

    >>> mirror_to_anterior("posterior", True, True), mirror_to_anterior("anterior", True, True)
    (True, False)
    """
    return bool(mirror_posterior and view == "posterior" and stored_flipped)
