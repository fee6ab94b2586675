"""From shapes to a scan: label painting, attenuation, soft tissue, collimator blur, Poisson noise.

Physics of one view (all deterministic given the subject's draws):

1. Bone, organ and artefact shapes are rasterised at full resolution into an activity map
   (sum of projections, each shape weighted by ``exp(-mu * thickness * distance to the
   camera side)``) and, in the view's :data:`PAINT_ORDER`, into the label map.
2. Soft tissue (body outline) is rasterised at half resolution; the activity is binned 2x2,
   the two are added and blurred with a separable Gaussian of the collimator FWHM there (the
   2x2 binning and bilinear upsampling add under 0.3 px of blur), then upsampled back.
3. The map is scaled to the subject's total counts and Poisson noise is drawn (a Gaussian
   approximation, rounded, where the mean exceeds 10 counts).
"""
from __future__ import annotations

from collections import Counter

import numpy as np
from scipy.ndimage import gaussian_filter1d

from bonepatch.anatomy import CLASS_IDS, FLIP_INDEX, KEYPOINT_IDS, NUM_KEYPOINTS
from bonepatch.data.phantom_body import PAINT_ORDER, Body
from bonepatch.data.phantom_shapes import Shape, attenuation, rasterise

LESION_SITES = {"spine": 0.4, "pelvis": 0.17, "rib": 0.2, "femur": 0.1, "skull": 0.08, "humerus": 0.05}


def _mirror(shapes: list[Shape], width: int) -> None:
    """Left-right mirror shapes in place (posterior view of the same subject)."""
    for s in shapes:
        s.pts = s.pts.copy()
        s.pts[:, 0] = width - 1 - s.pts[:, 0]
        s.angle = -s.angle


def _point_in(s: Shape, rng) -> np.ndarray:
    """A random point well inside shape ``s`` (pixels)."""
    if s.kind == "tube" and len(s.pts) > 1:
        i = rng.integers(len(s.pts) - 1)
        return s.pts[i] + rng.random() * (s.pts[i + 1] - s.pts[i])
    if s.kind == "poly":
        w = rng.dirichlet(np.ones(len(s.pts)))
        return w @ s.pts
    return s.pts[0] + rng.uniform(-0.5, 0.5, 2) * np.max(s.rad)


def add_focal(body: Body) -> None:
    """Metastasis-like lesions and degenerative joint spots (same draws for both views)."""
    rng = np.random.default_rng(body.s.body_seed)
    sites = [s for s in body.shapes if s.tag in LESION_SITES]
    count = Counter(s.tag for s in sites)  # each site's share is split evenly among its shapes
    p = np.array([LESION_SITES[s.tag] / count[s.tag] for s in sites])
    hosts = rng.choice(len(sites), body.s.n_lesions, p=p / p.sum())
    spots = [(sites[i], rng.uniform(2.0, 6.0), rng.uniform(1.5, 4.5)) for i in hosts]
    if body.joints and body.s.n_degenerative:
        for i in rng.choice(len(body.joints), body.s.n_degenerative):
            spots.append((body.joints[i], rng.uniform(1.3, 2.5), rng.uniform(2.0, 4.0)))
    for host, gain, r in spots:
        u = gain * max(float(np.max(host.upt)), 0.5 * body.u["spine"])
        body.shapes.append(Shape("ellipse", _point_in(host, rng)[None], np.array([r, r * 0.8]),
                                 u, depth=host.depth, thick=host.thick, angle=rng.uniform(0, np.pi)))


def _keypoint_end(s: Shape, top: bool) -> tuple[float, float]:
    """(x, y) of the top (or bottom) end of a shape's label footprint."""
    if s.kind == "ellipse":
        a, b = s.rad + s.pad
        sn, c = np.sin(s.angle), np.cos(s.angle)
        ey = np.sqrt((a * sn) ** 2 + (b * c) ** 2)
        dx = (a * a - b * b) * sn * c / ey
        return (s.pts[0, 0] - dx, s.pts[0, 1] - ey) if top else (s.pts[0, 0] + dx, s.pts[0, 1] + ey)
    reach = (s.rad + s.pad) if s.kind == "tube" else np.full(len(s.pts), s.pad)
    y = s.pts[:, 1] - reach if top else s.pts[:, 1] + reach
    ext = y.min() if top else y.max()
    near = np.abs(y - ext) < 1.5
    return float(s.pts[near, 0].mean()), float(ext)


def keypoints(body: Body, height: int, width: int) -> np.ndarray:
    """(K, 3) float32 true keypoints (x, y, vis) of a body in its view's pixel frame."""
    kp = np.zeros((NUM_KEYPOINTS, 3), np.float32)
    for name, (shape, top) in body.ends.items():
        x, y = _keypoint_end(shape, top)
        if 0.5 <= y <= height - 1.5 and 0 <= x <= width - 1:
            kp[KEYPOINT_IDS[name]] = (x, y, 1.0)
    return kp[list(FLIP_INDEX)] if body.post else kp


def _upsample2(a: np.ndarray) -> np.ndarray:
    """Bilinear x2 upsampling (H, W) -> (2H, 2W) with pixel-centre alignment."""
    for ax in (0, 1):
        lo = np.concatenate([a.take([0], ax), a.take(range(a.shape[ax] - 1), ax)], ax)
        hi = np.concatenate([a.take(range(1, a.shape[ax]), ax), a.take([-1], ax)], ax)
        even, odd = 0.75 * a + 0.25 * lo, 0.75 * a + 0.25 * hi
        a = np.stack([even, odd], ax + 1).reshape(
            (a.shape[0] * 2, a.shape[1]) if ax == 0 else (a.shape[0], a.shape[1] * 2))
    return a


def _noise(lam: np.ndarray, background: float, rng) -> np.ndarray:
    """Poisson counts of mean ``lam + background`` (H, W); Gaussian approximation above 10
    counts; the (uniform) background is drawn as sparse single events."""
    out = np.zeros(lam.shape, np.float32)
    n_bg = rng.poisson(background * lam.size)
    np.add.at(out.reshape(-1), rng.integers(0, lam.size, n_bg), 1)
    hot = lam > 10
    z = lam[hot]
    out[hot] += np.maximum(np.rint(z + np.sqrt(z) * rng.standard_normal(z.size, np.float32)), 0)
    cold = ~hot & (lam > 1e-3)
    out[cold] += rng.poisson(lam[cold])
    return out


def render_view(subj, view: str, cfg) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image (H, W) float32 counts, mask (H, W) uint8 and keypoints (K, 3) of one view."""
    h, w = cfg.height, cfg.width
    body = Body(subj, view, cfg.rib_label, w).build()
    add_focal(body)
    if body.post:
        _mirror(body.shapes + body.soft, w)
    order = {CLASS_IDS[n]: i + 1 for i, n in enumerate(PAINT_ORDER[view])}
    act = np.zeros((h, w), np.float32)
    lab = np.zeros((h, w), np.uint8)
    for s in sorted(body.shapes, key=lambda s: order.get(s.label, 0)):
        rasterise(s, act, lab, attenuation(s.depth, s.thick, body.post))
    soft = np.zeros((h // 2, w // 2), np.float32)
    dummy = np.zeros(soft.shape, np.uint8)
    for s in body.soft:  # half-resolution frame: pixel centres move to (x - 0.5) / 2
        half = Shape(s.kind, (s.pts - 0.5) / 2, s.rad / 2, s.upt, angle=s.angle)
        rasterise(half, soft, dummy, subj.soft * 4 * attenuation(0.5, 20, False))
    act2 = act.reshape(h // 2, 2, w // 2, 2).sum((1, 3)) + soft
    sigma = subj.fwhm_mm / cfg.mm_per_px / 2.355 / 2
    act2 = gaussian_filter1d(gaussian_filter1d(act2, sigma, 0, mode="constant"), sigma, 1,
                             mode="constant")
    act = _upsample2(np.maximum(act2, 0)) / 4
    rng = np.random.default_rng(subj.body_seed + (2 + body.post,))
    total = subj.counts * (1.05 if body.post else 1.0)
    lam = act * (total * 0.995 / max(float(act.sum()), 1e-6))
    return _noise(lam, total * 0.005 / act.size, rng), lab, keypoints(body, h, w)
