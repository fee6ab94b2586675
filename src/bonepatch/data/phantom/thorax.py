"""Chest of the phantom: ribs, sternum, clavicles, scapulae and the rib-cage label region.

Body units (see :mod:`body`). Ribs hang from the thoracic levels: a posterior arc out to the
lateral-most point, then (ribs 1-10) an anterior arc back to the sternum (1-7) or to the costal
margin (8-10); 11-12 float. The real maps' rules (``convention="reference"``): the rib class is
one region per side on both views (the union of the hulls of consecutive ribs: solid next to
the spine posterior; on the anterior view the lower ribs' region follows the costal margin and
leaves the lower spine free), the sternum is painted over the thoracic spine (anterior), and
the scapula label is its upper part (spine, acromion, supraspinous fossa), about half the blade.
"""
from __future__ import annotations

import numpy as np

from bonepatch.anatomy import CLASS_IDS as C
from bonepatch.data.phantom.shapes import Shape, attenuation

RIB_REACH = (0.0446, 0.0627, 0.0741, 0.0808, 0.0845, 0.0864, 0.0874, 0.0864, 0.0836, 0.0789, 0.0665, 0.0551)
STERNUM = (0.177, 0.257)  # manubrium top, xiphoid (u)


def _rib_points(i: int, y0: float, xo: float, sd: int) -> tuple[list, int]:
    """Vertices (u) of rib i on side sd and the index where the anterior arc begins."""
    e = RIB_REACH[i] * sd
    if i >= 10:  # floating ribs: short, no anterior arc
        return [[xo + sd * 0.013, y0], [0.6 * e, y0 + 0.004], [e, y0 + 0.012]], 3
    lat = y0 + 0.016 + 0.0012 * i
    if i < 7:
        end = [sd * 0.012, STERNUM[0] + 0.006 + 0.0115 * i]
    else:
        end = [sd * (0.04 + 0.016 * (i - 7)), 0.264 + 0.018 * (i - 7)]
    mid = [0.72 * e, 0.5 * (lat + end[1]) + 0.004]
    return [[xo + sd * 0.013, y0], [xo + 0.45 * e, y0 - 0.002], [0.82 * e, y0 + 0.005],
            [e, lat], mid, end], 4


def add_ribs(b, y_top: float, step: float, n: int) -> None:
    """Both sides' ribs 1-12 (tubes; labelled themselves only without the rib region, whose
    polygons carry the label otherwise). The view attenuation of each arc (depth 0.85 vs 0.15) is
    baked into its vertex uptake, so the shapes themselves have none."""
    w_post, w_ant = (attenuation(d, 22, b.post) for d in (0.85, 0.15))
    b.rib_pts = {-1: [], 1: []}
    for i in range(n):
        y0 = y_top + (i + 0.5) * step
        xo = b.spine_x(y0)
        for sd in (-1, 1):
            pts, k = _rib_points(i, y0, xo, sd)
            r = b.u["rib"] * b.s.rib_jit[i, (sd + 1) // 2]
            upt = [r * w_post] * min(k, len(pts)) + [r * 0.5 * w_ant] * (len(pts) - k)
            b.add("tube", pts, 0.0034, upt, "" if b.rib_region else "rib", "rib", 0.0, 0.0,
                  pad=b.rib_pad)
            b.rib_pts[sd].append((pts, k))


def _hull(pts: np.ndarray) -> np.ndarray:
    """Convex hull (Andrew's monotone chain) of a few (n, 2) points, counter-clockwise."""
    p = sorted(map(tuple, pts))

    def half(seq):
        out = []
        for q in seq:
            while len(out) >= 2 and ((out[-1][0] - out[-2][0]) * (q[1] - out[-2][1])
                                     - (out[-1][1] - out[-2][1]) * (q[0] - out[-2][0])) <= 0:
                out.pop()
            out.append(q)
        return out[:-1]

    return np.array(half(p) + half(p[::-1]))


def rib_cage(b) -> None:
    """Label-only rib region of each side: hulls of ribs 1-7 and of the consecutive pairs below
    (module docstring)."""
    pad = 0.0034 * b.s.height_px
    for sd in (-1, 1):
        ribs = b.rib_pts[sd]
        keep = []
        for i, (pts, k) in enumerate(ribs):
            if b.post or not b.ref or i < 7:
                keep.append(np.array(pts))
            else:  # anterior lower ribs: lateral and anterior arcs only (costal margin)
                keep.append(np.array(pts[2:] if i < 10 else pts[1:]))
        groups = [keep[:7]] + [keep[i:i + 2] for i in range(6, len(keep) - 1)]
        for g in groups:  # ribs 1-7 as one hull, then consecutive pairs (the costal margin)
            hull = _hull(b.to_px(np.concatenate(g)))
            b.shapes.append(Shape("poly", hull, np.zeros(1), 0.0, C["rib"], pad=pad, tag=""))  # px


def add_thorax(b) -> None:
    """Sternum, clavicles, scapulae (bone and label) and the rib region."""
    u, ref = b.u, b.ref
    st = "" if b.post else "sternum"
    b.add("ellipse", [0, STERNUM[0] + 0.012], [0.017, 0.012], u["sternum"], st, "", 0.05, 22)
    b.add("tube", [[0, 0.2], [0, 0.245], [0, STERNUM[1] - 0.004]], [0.0095, 0.0085, 0.004],
          u["sternum"], st, "", 0.05, 22)
    blade_label = "" if ref else "scapula"
    for sd in (-1, 1):
        b.add("tube", [[sd * 0.016, 0.179], [sd * 0.045, 0.169], [sd * 0.075, 0.158],
                       [sd * 0.097, 0.153]], 0.0048, u["clavicle"], "clavicle", "", 0.15, 22)
        b.add("poly", [[sd * 0.043, 0.162], [sd * 0.094, 0.156], [sd * 0.088, 0.2],
                       [sd * 0.066, 0.255], [sd * 0.043, 0.22]], 0.0, u["scapula"], blade_label,
              "", 0.88, 22)
        b.joints.append(b.add("tube", [[sd * 0.045, 0.176], [sd * 0.085, 0.163], [sd * 0.1, 0.155]],
                              0.004, u["scapula"] * 1.6, blade_label, "", 0.85, 22))
        if ref:  # the real maps' scapula: the upper part of the blade
            b.add("poly", [[sd * 0.05, 0.152], [sd * 0.093, 0.147], [sd * 0.09, 0.195],
                           [sd * 0.07, 0.205], [sd * 0.05, 0.19]], 0.0, 0.0, "scapula", "")
    if b.rib_region:
        rib_cage(b)
