"""Primitive shapes of the bone-scan phantom and their rasterisation on bounding-box windows.

Coordinates are pixels (x, y) of the final image, x right, y down; the centre of pixel
``[row, col]`` is at ``(x=col, y=row)``. Three primitives cover the whole body:

- ``tube``: a polyline with a radius and an uptake per vertex (a capsule chain; tapered
  radius and uptake are interpolated along each segment). Bones, ribs, vertebrae.
- ``ellipse``: centre, semi-axes ``(a, b)``, angle (radians, a-axis from +x towards +y),
  optionally a bright shell (calvarium, iliac crest).
- ``poly``: a convex polygon (scapula blade, label-only rib-cage region).

:func:`rasterise` draws one shape on its window; it is the readable reference of the
vectorised :func:`raster.rasterise_all` that renders use (tests compare the two).

Each shape carries a label id (0 = paints no label: unlabelled bones, organs, artefacts), a
label padding in pixels (the label footprint is the shape grown by ``pad``: closes disc gaps and
intercostal gaps in the label map), a depth fraction (0 = anterior skin, 1 = posterior skin)
and the body thickness (cm) there, which set the attenuation of each view.

>>> s = Shape("tube", np.array([[10., 10.], [10., 30.]]), np.array([3., 3.]), np.array([1., 1.]))
>>> act, lab = np.zeros((40, 20), np.float32), np.zeros((40, 20), np.uint8)
>>> s.label = 4; rasterise(s, act, lab, weight=1.0); int(lab.sum() // 4), act.shape
(169, (40, 20))
"""
from __future__ import annotations

import numpy as np


DISC_DIP = 0.5  # activity dip at a disc gap (fraction)
MU_PER_CM = 0.08  # effective linear attenuation of soft tissue at 140 keV (with scatter)


def attenuation(depth: float, thick: float, posterior: bool) -> float:
    """Fraction of counts reaching the camera from ``depth`` (0 anterior .. 1 posterior skin)
    in a body ``thick`` cm thick, for the anterior or posterior view."""
    return float(np.exp(-MU_PER_CM * thick * ((1 - depth) if posterior else depth)))


class Shape:
    """One primitive (see the module docstring); ``pts`` (n, 2) px, ``rad`` (n,) px or (a, b)."""

    __slots__ = ("kind", "pts", "rad", "upt", "label", "pad", "depth", "thick", "angle",
                 "shell", "tag", "period", "hot")

    def __init__(self, kind, pts, rad, upt, label=0, pad=0.0, depth=0.5, thick=20.0,
                 angle=0.0, shell=0.0, tag=""):
        self.kind, self.pts, self.rad, self.upt = kind, pts, rad, upt
        self.label, self.pad, self.depth, self.thick = label, pad, depth, thick
        self.angle, self.shell, self.tag = angle, shell, tag
        self.period = None  # (period px, phase y px): periodic activity dips (disc gaps)
        self.hot = 0  # hotspot class of the shape's footprint (1 lesion, 2 degenerative, 3 artefact)

    def reach(self) -> float:
        """Largest distance (px) of the label or activity footprint from ``pts``."""
        return float(np.max(self.rad)) + self.pad + 1.0

    def bbox(self, h: int, w: int) -> tuple[int, int, int, int] | None:
        """Clipped integer window ``(y0, y1, x0, x1)`` (end exclusive) or None if off-image."""
        r = self.reach()
        x0 = max(int(np.floor(self.pts[:, 0].min() - r)), 0)
        x1 = min(int(np.ceil(self.pts[:, 0].max() + r)) + 1, w)
        y0 = max(int(np.floor(self.pts[:, 1].min() - r)), 0)
        y1 = min(int(np.ceil(self.pts[:, 1].max() + r)) + 1, h)
        return (y0, y1, x0, x1) if x1 > x0 and y1 > y0 else None


def _tube(s: Shape, xx: np.ndarray, yy: np.ndarray, pad: float):
    """Normalised distances ``q`` (activity) and ``ql`` (label) and uptake ``u`` on a window.

    Each segment is evaluated only on its own part of the window (long bones and ribs span
    windows that are mostly empty for any one segment).
    """
    shape = (yy.shape[0], xx.shape[1])
    q = np.full(shape, np.inf, np.float32)
    ql = np.full(shape, np.inf, np.float32) if pad else q
    u = np.zeros(shape, np.float32)
    pts, rad, upt = s.pts, s.rad, s.upt
    for i in range(max(len(pts) - 1, 1)):
        j = min(i + 1, len(pts) - 1)
        (ax, ay), (bx, by) = pts[i], pts[j]
        reach = max(rad[i], rad[j]) + pad + 1
        ys = slice(max(int(min(ay, by) - reach - yy[0, 0]), 0), max(int(max(ay, by) + reach - yy[0, 0]) + 2, 0))
        xs = slice(max(int(min(ax, bx) - reach - xx[0, 0]), 0), max(int(max(ax, bx) + reach - xx[0, 0]) + 2, 0))
        px, py = xx[:, xs] - np.float32(ax), yy[ys] - np.float32(ay)
        dx, dy = np.float32(bx - ax), np.float32(by - ay)
        ll = dx * dx + dy * dy
        t = np.clip((px * dx + py * dy) * (1 / ll), 0, 1) if ll > 0 else np.zeros((1, 1), np.float32)
        d = np.hypot(px - t * dx, py - t * dy)
        r = rad[i] + t * np.float32(rad[j] - rad[i])
        qi = d / r
        qs, us = q[ys, xs], u[ys, xs]
        better = qi < qs
        if pad:
            np.minimum(ql[ys, xs], d / (r + pad), out=ql[ys, xs])
        np.copyto(qs, qi, where=better)
        np.copyto(us, upt[i] + t * np.float32(upt[j] - upt[i]), where=better)
    return q, ql, u


def _ellipse(s: Shape, xx: np.ndarray, yy: np.ndarray, pad: float):
    (cx, cy), (a, b) = s.pts[0], s.rad
    c, sn = np.cos(s.angle), np.sin(s.angle)
    xr = (xx - cx) * c + (yy - cy) * sn
    yr = -(xx - cx) * sn + (yy - cy) * c
    q = np.sqrt((xr / a) ** 2 + (yr / b) ** 2)
    ql = np.sqrt((xr / (a + pad)) ** 2 + (yr / (b + pad)) ** 2) if pad else q
    return q, ql, np.float32(s.upt)


def _poly(s: Shape, xx: np.ndarray, yy: np.ndarray, pad: float):
    """Convex polygon, vertices in either winding; q is 0 inside and 2 outside."""
    p = s.pts
    area2 = np.sum(p[:, 0] * np.roll(p[:, 1], -1) - np.roll(p[:, 0], -1) * p[:, 1])
    sign = 1.0 if area2 > 0 else -1.0
    dist = None  # signed distance to the nearest edge line, positive inside
    for (ax, ay), (bx, by) in zip(p, np.roll(p, -1, axis=0)):
        ex, ey = bx - ax, by - ay
        n = np.hypot(ex, ey) or 1.0
        di = sign * (ex * (yy - ay) - ey * (xx - ax)) / n
        dist = di if dist is None else np.minimum(dist, di)
    q = np.where(dist >= 0, 0.0, 2.0).astype(np.float32)
    ql = np.where(dist >= -pad, 0.0, 2.0) if pad else q
    return q, ql, np.float32(s.upt)


_KINDS = {"tube": _tube, "ellipse": _ellipse, "poly": _poly}


def rasterise(s: Shape, act: np.ndarray, lab: np.ndarray, weight: float) -> None:
    """Add the shape's activity ``weight * uptake * profile`` to ``act`` and paint its label.

    Args:
        s: the shape.
        act: (H, W) float32 activity, accumulated in place (projection = sum).
        lab: (H, W) uint8 label map, painted in place where the padded footprint lies (callers
            rasterise in increasing label priority, so later shapes win).
        weight: view attenuation factor of the shape.

    The profile is the chord length of a round cross-section, ``sqrt(1 - q^2)`` (tubes, filled
    ellipses), or a rim for shelled ellipses, so projected bone looks rounded, not flat.
    """
    box = s.bbox(*act.shape)
    if box is None:
        return
    y0, y1, x0, x1 = box
    yy = np.arange(y0, y1, dtype=np.float32)[:, None]
    xx = np.arange(x0, x1, dtype=np.float32)[None, :]
    q, ql, u = _KINDS[s.kind](s, xx, yy, s.pad)
    if s.label:
        lab[y0:y1, x0:x1][ql <= 1] = s.label
    if weight <= 0 or not np.any(s.upt):
        return
    inside = q <= 1
    if s.shell:  # bright rim of relative width `shell` over a fainter interior
        prof = 0.35 + 0.65 * np.exp(-((1 - q) / s.shell) ** 2)
    else:
        prof = 0.3 + 0.7 * np.sqrt(np.clip(1 - q * q, 0, 1))
    if s.period:
        gap = (0.5 + 0.5 * np.cos(2 * np.pi * (yy - s.period[1]) / s.period[0])) ** 6
        prof = prof * (1 - DISC_DIP * gap)
    act[y0:y1, x0:x1] += np.where(inside, (weight * u) * prof, 0).astype(np.float32)
