"""Limbs and pelvis of the phantom skeleton (body units, see :mod:`body`).

``side`` 0 is the image-left limb of the anterior view (x < midline, keypoint suffix ``_l``),
1 the image-right one. Forearms, hands, patellae, tibiae, fibulae and feet paint no label.
"""
from __future__ import annotations

import numpy as np


def _dir(angle: float, sd: int) -> np.ndarray:
    """Unit vector pointing down, turned outwards (away from the midline) by ``angle`` rad."""
    return np.array([sd * np.sin(angle), np.cos(angle)])


def _perp(d: np.ndarray) -> np.ndarray:
    return np.array([d[1], -d[0]])


def add_arm(b, side: int) -> None:
    """Humerus (head, shaft, condyles; labelled), forearm and hand (unlabelled)."""
    s, u, sd = b.s, b.u, 2 * side - 1
    nm = "lr"[side]
    d = _dir(s.arm_abd[side], sd)
    hc = np.array([sd * 0.108, 0.176])
    el = hc + d * 0.152
    head = b.add("ellipse", hc + [sd * 0.002, 0.002], [0.012, 0.0125], u["joint"] * 0.85, "humerus",
                 "humerus", 0.5, 14, angle=float(np.arctan2(d[1], d[0])))
    b.add("tube", [hc + 0.01 * d, hc + 0.05 * d, el - 0.01 * d], [0.0085, 0.0058, 0.0068],
          [u["joint"] * 0.8, u["shaft"], u["shaft"] * 1.2], "humerus", "humerus", 0.5, 10)
    p = _perp(d) * 0.01
    cond = b.add("tube", [el - p, el + p], 0.0075, u["joint"] * 0.6, "humerus", "humerus", 0.5, 9)
    b.ends[f"shoulder_{nm}"], b.ends[f"elbow_{nm}"] = (head, True), (cond, False)
    b.joints.append(head)
    d2 = _dir(s.arm_abd[side] - s.forearm_in[side], sd)
    wr = el + d2 * 0.146
    q = _perp(d2) * 0.0055
    for o in (-q, q):
        b.add("tube", [el + o + 0.01 * d2, wr + o], [0.0036, 0.0032],
              [u["shaft"] * 0.85, u["joint"] * 0.45], "", "", 0.5, 8)
    ang = float(np.arctan2(d2[1], d2[0]))
    b.add("ellipse", wr + 0.03 * d2, [0.024, 0.014], u["small"], depth=0.5, thick=5, angle=ang)
    b.add("ellipse", wr + 0.07 * d2, [0.024, 0.012], u["small"] * 0.55, depth=0.5, thick=4, angle=ang)
    b.joints.append(b.add("ellipse", wr + 0.005 * d2, [0.007, 0.012], u["joint"] * 0.55, depth=0.5,
                          thick=5, angle=ang))
    if s.child:
        b.add("tube", [hc + 0.012 * d - p, hc + 0.012 * d + p], 0.0025, u["growth"], thick=14)
        b.add("tube", [wr - 0.005 * d2 - q * 2, wr - 0.005 * d2 + q * 2], 0.0025, u["growth"], thick=6)
    b.add("tube", [hc + 0.01 * d, el, wr, wr + 0.08 * d2], [0.036, 0.03, 0.022, 0.022], 1.0, soft=True)
    if s.injection is not None and s.injection[0] == side:
        b.add("ellipse", el + d2 * 0.146 * s.injection[1], [0.004, 0.004], 30.0 * u["spine"],
              depth=0.2, thick=8, hot=3)


def add_pelvis(b) -> None:
    """Iliac wings (labelled 'pelvis', their tops are the iliac keypoints), acetabula, rami; the
    real maps' pelvis region is generous (label padding ``pad`` with ``convention="reference"``)."""
    u = b.u
    pad = 0.0015 if b.ref else 0.0
    for side, sd in ((0, -1), (1, 1)):
        wing = b.add("ellipse", [sd * 0.062, 0.43], [0.036, 0.022], u["pelvis"], "pelvis",
                     "pelvis", 0.55, 22, angle=-sd * 0.6, shell=0.3, pad=pad)
        b.ends[f"iliac_{'lr'[side]}"] = (wing, True)
        b.add("ellipse", [sd * 0.052, 0.468], [0.019, 0.019], u["pelvis"] * 1.2, "pelvis",
              "pelvis", 0.5, 22, shell=0.3, pad=pad)
        b.add("tube", [[sd * 0.04, 0.47], [sd * 0.022, 0.488], [sd * 0.007, 0.503]], 0.0065,
              u["pelvis"], "pelvis", "pelvis", 0.25, 22, pad=pad)
        b.add("tube", [[sd * 0.05, 0.48], [sd * 0.05, 0.506], [sd * 0.03, 0.516], [sd * 0.008, 0.507]],
              0.0065, u["pelvis"], "pelvis", "pelvis", 0.6, 22, pad=pad)
    if b.s.urine is not None:
        x, y = b.s.urine
        b.add("ellipse", [x, 0.5 + y], [0.006, 0.005], 12.0 * u["spine"], depth=0.05, thick=20, hot=3)


def add_leg(b, side: int, shank: bool = True) -> None:
    """Femur (head, neck, trochanter, shaft, condyles; labelled; with the reference convention
    the pelvis label covers the head) and, if ``shank``, patella, tibia, fibula and foot
    (unlabelled)."""
    s, u, sd = b.s, b.u, 2 * side - 1
    nm = "lr"[side]
    fh = np.array([sd * 0.052, 0.468])
    spread = np.sin(s.leg_abd[side])
    kn = np.array([sd * (0.046 + 0.24 * spread), 0.706])
    an = np.array([sd * (0.044 + 0.48 * spread), 0.955])
    head = b.add("tube", [fh], 0.0125, u["joint"], "femur", "femur", 0.5, 22)
    gt = fh + [sd * 0.03, 0.02]
    b.add("tube", [fh, gt], 0.0085, u["joint"] * 0.8, "femur", "femur", 0.5, 20)
    troch = b.add("ellipse", gt + [sd * 0.004, -0.003], [0.011, 0.013], u["joint"] * 0.8, "femur",
                  "femur", 0.5, 20)
    # the real maps give the femoral head to the pelvis (painted over it): the femur label, and
    # the hip keypoint of keypoints_from_mask, start at the greater trochanter
    b.ends[f"hip_{nm}"] = (troch if b.ref else head, True)
    b.add("tube", [gt + [0, 0.01], (gt + kn) / 2, kn - [0, 0.012]], [0.0085, 0.0078, 0.0095],
          [u["shaft"] * 1.2, u["shaft"], u["shaft"] * 1.4], "femur", "femur", 0.5, 15,
          pad=0.002 if b.ref else 0.0)
    cond = b.add("tube", [kn - [0.012, 0], kn + [0.012, 0]], 0.0105, u["joint"] * 0.9, "femur",
                 "femur", 0.5, 12)
    b.ends[f"knee_{nm}"] = (cond, False)
    b.joints.append(cond)
    if s.child:
        b.add("tube", [kn + [-0.016, -0.008], kn + [0.016, -0.008]], 0.0025, u["growth"], thick=12)
    b.add("tube", [fh + [sd * 0.02, -0.01], kn], [0.057, 0.039], 1.0, soft=True)
    if not shank:
        return
    b.add("ellipse", kn + [0, -0.008], [0.009, 0.011], u["joint"] * 0.6, depth=0.05, thick=12)
    pl = kn + [0, 0.021]
    b.add("ellipse", pl, [0.019, 0.009], u["joint"] * 0.8, depth=0.5, thick=11)
    b.add("tube", [pl + [0, 0.008], (pl + an) / 2, an - [0, 0.006]], [0.0078, 0.0068, 0.0068],
          [u["shaft"] * 1.3, u["shaft"], u["shaft"] * 1.2], depth=0.4, thick=10)
    b.add("tube", [pl + [sd * 0.017, 0.01], an + [sd * 0.014, 0]], 0.003, u["shaft"] * 0.8,
          depth=0.5, thick=10)
    if s.child:
        b.add("tube", [pl + [-0.016, 0.008], pl + [0.016, 0.008]], 0.0025, u["growth"], thick=11)
    b.joints.append(b.add("tube", [an - [0.012, 0], an + [0.012, 0]], 0.006, u["joint"], depth=0.5,
                          thick=8))
    b.add("tube", [an + [0, 0.008], an + [sd * 0.022, 0.038]], [0.011, 0.009], u["small"],
          depth=0.5, thick=7)
    b.add("tube", [kn, an, an + [sd * 0.02, 0.04]], [0.031, 0.02, 0.018], 1.0, soft=True)
