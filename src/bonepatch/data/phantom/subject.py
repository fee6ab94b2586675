"""Random subject of the bone-scan phantom: body size, placement, pose, physiology, artefacts.

Everything random about a subject is drawn here, once, from ``np.random.default_rng([seed,
subject])``, so the anterior and posterior views of a subject share it exactly. Lengths are
fractions of body height (``u``) unless the name says ``_px``, ``_cm`` or ``_mm``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Bone groups with their own uptake (relative counts per pixel before attenuation).
UPTAKE = {
    "skull": 0.68, "face": 0.8, "spine": 1.0, "sacrum": 1.0, "pelvis": 0.7, "si": 1.3,
    "rib": 0.26, "sternum": 0.5, "clavicle": 0.36, "scapula": 0.25, "joint": 0.62,
    "shaft": 0.2, "small": 0.38, "growth": 2.2,
}


@dataclass
class Subject:
    """All random draws of one subject (see the module docstring for units)."""

    height_px: float
    mm_per_px: float            # pixel size of this subject's views
    top_px: float               # y of the vertex (top of the head); < 0 = head truncated
    cx_px: float                # x of the body midline
    rot: float                  # in-plane rotation (rad) about the body centre
    child: bool
    head_frac: float            # vertex-to-chin share of height (adult 0.13)
    breadth: float              # lateral scale of the trunk and limbs
    arm_abd: np.ndarray         # (2,) humerus angle from vertical, sides (image-left, right)
    forearm_in: np.ndarray      # (2,) forearm bend towards the midline (rad)
    leg_abd: np.ndarray         # (2,)
    scoliosis: float            # lateral amplitude of the spine (u); 0 = straight
    missing: tuple[str, int] | None  # ("arm" | "leg" | "shank", side index) or None
    uptake: dict = field(default_factory=dict)
    soft: float = 0.08          # soft-tissue level relative to spine uptake
    kidney: float = 0.5
    bladder: float = 2.0
    bladder_r: float = 0.022
    superscan: bool = False
    n_lesions: int = 0
    n_degenerative: int = 0
    injection: tuple[int, float] | None = None   # (side index, position along the forearm)
    urine: tuple[float, float] | None = None     # (x, y) in u, relative to the pubis
    counts: float = 1e6
    fwhm_mm: float = 10.0
    body_seed: tuple = ()
    spine_jit: np.ndarray = field(default_factory=lambda: np.ones(27))  # per-level uptake factor
    width_jit: np.ndarray = field(default_factory=lambda: np.ones(27))  # per-level width factor
    rib_jit: np.ndarray = field(default_factory=lambda: np.ones((12, 2)))  # per-rib uptake factor


def _arm_pose(rng, over_pelvis: bool) -> tuple[float, float]:
    """(humerus abduction, forearm inward bend) for one arm."""
    if over_pelvis:  # forearms across the lower abdomen, hands over the pelvis / upper thighs
        return rng.uniform(0.02, 0.12), rng.uniform(0.45, 0.8)
    pose = rng.choice(3, p=(0.6, 0.2, 0.2))  # at the sides, slightly abducted, hands on abdomen
    if pose == 0:
        return rng.uniform(0.06, 0.16), rng.uniform(-0.08, 0.08)
    if pose == 1:
        return rng.uniform(0.15, 0.4), rng.uniform(-0.1, 0.1)
    return rng.uniform(0.0, 0.1), rng.uniform(0.9, 1.35)


def sample_subject(seed: int, subject: int, cfg) -> Subject:
    """Draw subject ``subject`` of ``seed`` for a :class:`PhantomConfig` ``cfg``."""
    rng = np.random.default_rng([seed, subject])
    child = rng.random() < cfg.child_prob
    if child:
        height_cm = rng.uniform(90, 150)
        head_frac = np.interp(height_cm, [90, 150], [0.2, 0.15]) * rng.uniform(0.95, 1.05)
    else:
        height_cm = rng.uniform(*cfg.height_cm_range)
        head_frac = 0.13 * rng.uniform(0.95, 1.05)
    lo, hi = cfg.spacing_scale_range
    mm = cfg.mm_per_px * (rng.uniform(lo, hi) if hi > lo else lo)
    height_px = height_cm * 10 / mm
    top = rng.uniform(10, 45) * cfg.height / 1024
    trunc = rng.random() < cfg.truncate_prob
    if trunc and rng.random() < 0.5:
        top = -rng.uniform(0.02, 0.1) * height_px
    elif trunc:
        top = cfg.height - height_px * rng.uniform(0.8, 0.95)
    missing = None
    if rng.random() < cfg.missing_limb_prob:
        missing = (str(rng.choice(["arm", "leg", "shank"])), int(rng.integers(2)))
    over = rng.random() < cfg.arms_over_pelvis_prob
    poses = [_arm_pose(rng, over) for _ in range(2)]
    superscan = rng.random() < cfg.superscan_prob
    jitter = {k: v * rng.lognormal(0, 0.15) for k, v in UPTAKE.items()}
    if superscan:
        jitter = {k: v * 2.5 for k, v in jitter.items()}
    if child:
        jitter["joint"] *= 1.3
    n_les = int(rng.integers(1, cfg.max_lesions + 1)) if (
        cfg.max_lesions > 0 and rng.random() < cfg.lesion_prob) else 0
    return Subject(
        height_px=height_px, mm_per_px=float(mm), top_px=top,
        cx_px=cfg.width / 2 - 0.5 + rng.normal(0, cfg.shift_px) * cfg.width / 256,
        rot=np.deg2rad(rng.normal(0, 1.5)), child=child, head_frac=head_frac,
        breadth=rng.uniform(0.78, 0.92) * (0.92 if child else 1.0),
        arm_abd=np.array([p[0] for p in poses]), forearm_in=np.array([p[1] for p in poses]),
        leg_abd=rng.uniform(0.0, 0.05, 2),
        scoliosis=rng.choice([-1, 1]) * rng.uniform(0.008, 0.03) if rng.random() < cfg.scoliosis_prob else 0.0,
        missing=missing, uptake=jitter,
        soft=rng.uniform(0.06, 0.15) * (0.4 if superscan else 1.0),
        kidney=rng.uniform(0.15, 0.7) * (0.05 if superscan else 1.0),
        bladder=float(np.exp(rng.uniform(np.log(0.3), np.log(4.0)))) * (0.1 if superscan else 1.0)
        * (rng.random() > 0.05),
        bladder_r=rng.uniform(0.01, 0.02), superscan=superscan, n_lesions=n_les,
        n_degenerative=int(rng.integers(0, 5)) if not child else 0,
        injection=(int(rng.integers(2)), rng.uniform(0.1, 0.9)) if rng.random() < cfg.artefact_prob else None,
        urine=(rng.uniform(-0.1, 0.1), rng.uniform(0.0, 0.25)) if rng.random() < cfg.artefact_prob / 2 else None,
        counts=float(np.exp(rng.uniform(*np.log(cfg.counts_range)))),
        fwhm_mm=rng.uniform(*cfg.fwhm_mm_range),
        body_seed=(seed, subject, 1),
        spine_jit=rng.lognormal(0, 0.12, 27), width_jit=rng.uniform(0.9, 1.1, 27),
        rib_jit=rng.lognormal(0, 0.2, (12, 2)),
    )
