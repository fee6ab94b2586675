"""From shapes to a scan: label painting, attenuation, soft tissue, collimator blur, Poisson noise.

Physics of one view (all deterministic given the subject's draws):

1. Bone, organ and artefact shapes are rasterised at full resolution (all at once,
   :mod:`raster`) into an activity map (sum of projections, each shape weighted by
   ``exp(-mu * thickness * distance to the camera side)``), summed straight into 2x2 bins, and,
   with the convention's and view's :data:`PAINT_ORDER` as priority, into the label map; the
   shapes with a hotspot class (lesions, degenerative spots, artefacts, bladder) once more into
   the hotspot map (:func:`hotspot_map`).
2. Soft tissue (body outline) is rasterised at half resolution and added to the binned
   activity, which is blurred with a separable Gaussian of the collimator FWHM there (the 2x2
   binning and bilinear upsampling add under 0.3 px of blur), then upsampled back.
3. The map is scaled to the subject's total counts and Poisson noise is drawn (a Gaussian
   approximation, rounded, where the mean exceeds 10 counts; an exact table sampler below).
"""
from __future__ import annotations

from collections import Counter

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.special import gammaln

from bonepatch.anatomy import CLASS_IDS, KEYPOINT_IDS, NUM_KEYPOINTS, swap_sides
from bonepatch.data.phantom.body import PAINT_ORDER, Body
from bonepatch.data.phantom.raster import rasterise_all
from bonepatch.data.phantom.shapes import Shape, attenuation

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
    for j, (host, gain, r) in enumerate(spots):
        u = gain * max(float(np.max(host.upt)), 0.5 * body.u["spine"])
        spot = Shape("ellipse", _point_in(host, rng)[None], np.array([r, r * 0.8]), u,
                     depth=host.depth, thick=host.thick, angle=rng.uniform(0, np.pi))
        spot.hot = 1 if j < body.s.n_lesions else 2
        body.shapes.append(spot)


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
    return swap_sides(kp) if body.post else kp


def _upsample2(a: np.ndarray) -> np.ndarray:
    """Bilinear x2 upsampling (H, W) -> (2H, 2W) with pixel-centre alignment (edges clamped):
    each output pixel is 3/4 of its parent plus 1/4 of the parent's neighbour on its side."""
    h, w = a.shape
    q, a3 = 0.25 * a, 0.75 * a
    c = np.empty((h, 2 * w), a.dtype)  # columns first, on the small array
    c[:, 0::2] = a3
    c[:, 2::2] += q[:, :-1]
    c[:, 0] += q[:, 0]
    c[:, 1::2] = a3
    c[:, 1:-1:2] += q[:, 1:]
    c[:, -1] += q[:, -1]
    q, c3 = 0.25 * c, 0.75 * c
    out = np.empty((2 * h, 2 * w), a.dtype)
    out[0::2] = c3
    out[2::2] += q[:-1]
    out[0] += q[0]
    out[1::2] = c3
    out[1:-1:2] += q[1:]
    out[-1] += q[-1]
    return out


def _poisson_tables(step: float = 1 / 32, top: float = 10.0, kmax: int = 48):
    """CDF rows of Poisson(g) on the grid g = 0, step, .., top (kmax values; the tail beyond,
    < 1e-17 at g = 10, is folded into the last) and their guide tables (Chen & Asau 1974)."""
    g = np.arange(round(top / step) + 1)[:, None] * step
    k = np.arange(kmax)
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = k * np.log(g) - g - gammaln(k + 1)
    cdf = np.cumsum(np.exp(np.nan_to_num(logp, nan=0.0, neginf=-np.inf)), 1)
    cdf[0] = 1.0  # g = 0: all mass at 0
    cdf[:, -1] = 1.0
    guide = (cdf[:, None, :] < (np.arange(kmax) / kmax)[:, None]).sum(2)  # min k: F(k) >= m/kmax
    return step, kmax, cdf.ravel(), (guide + np.arange(len(g))[:, None] * kmax).ravel().astype(np.int32)


_TABLES = _poisson_tables()


def _poisson_small(lam: np.ndarray, rng) -> np.ndarray:
    """Poisson draws for means ``lam`` <= 10, vectorised: lam = g + r with g on the table grid;
    Poisson(g) by guided table inversion, plus Poisson(r), r < 1/32, by inversion over its first
    four terms (the rest, < 3e-10, is dropped). Several times faster than ``rng.poisson`` here."""
    step, kmax, cdf, guide = _TABLES
    i = np.minimum((lam * np.float32(1 / step)).astype(np.int32), len(cdf) // kmax - 1)
    u = rng.random(lam.size)
    flat = guide[i * kmax + (u * kmax).astype(np.int32)]
    idx = np.flatnonzero(cdf[flat] < u)
    while idx.size:  # step up to the first k with F(k) >= u (about one step on average)
        flat[idx] += 1
        idx = idx[cdf[flat[idx]] < u[idx]]
    flat -= i * kmax
    n = flat.astype(np.float32)
    r = lam - i * np.float32(step)  # residual mean in [0, step)
    u = rng.random(lam.size, np.float32)
    term = np.exp(-r)
    acc = term.copy()
    for j in range(1, 5):
        n += u > acc
        term *= r * np.float32(1 / j)
        acc += term
    return n


def _noise(lam: np.ndarray, background: float, rng) -> np.ndarray:
    """Poisson counts of mean ``lam + background`` (H, W): a Gaussian approximation (rounded,
    clipped at 0) above 10 counts, :func:`_poisson_small` below; the (uniform) background is
    drawn as sparse single events."""
    flat = lam.reshape(-1)
    out = np.zeros(flat.size, np.float32)
    hot = np.flatnonzero(flat > 10)
    z = flat[hot]
    g = rng.standard_normal(z.size, np.float32)
    g *= np.sqrt(z)
    g += z
    out[hot] = np.maximum(np.rint(g, out=g), 0, out=g)
    cold = np.flatnonzero((flat > 1e-3) & (flat <= 10))
    for i in range(0, cold.size, 16384):  # chunks: small temporaries are much cheaper here
        c = cold[i:i + 16384]
        out[c] = _poisson_small(flat[c], rng)
    n_bg = rng.poisson(background * flat.size)
    np.add.at(out, rng.integers(0, flat.size, n_bg), np.ones(n_bg, np.float32))
    return out.reshape(lam.shape)


#: hotspot classes of the second label map, lowest priority first (a lesion wins)
HOT_ORDER = (2, 3, 1)  # degenerative, artefact / bladder, lesion


def hotspot_map(shapes: list[Shape], h: int, w: int) -> np.ndarray:
    """(H, W) uint8 hotspot classes (0 none, 1 lesion, 2 degenerative, 3 artefact / bladder):
    the footprints of the shapes that carry a ``hot`` class."""
    hot = [s for s in shapes if s.hot]
    if not hot:
        return np.zeros((h, w), np.uint8)
    code = {c: (i + 1) << 4 | c for i, c in enumerate(HOT_ORDER)}
    top = rasterise_all(hot, [0.0] * len(hot), [code[s.hot] for s in hot], h, w, binned=False)[1]
    return np.bitwise_and(top, 15, out=top).reshape(h, w)


def render_view(subj, view: str, cfg) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Image (H, W) float32 counts, mask (H, W) uint8, keypoints (K, 3) and hotspot map (H, W)
    uint8 of one view."""
    h, w = cfg.height, cfg.width
    body = Body(subj, view, cfg.rib_label, w, cfg.convention).build()
    add_focal(body)
    if body.post:
        _mirror(body.shapes + body.soft, w)
    # label code = (paint rank << 4) | class id: the max code per pixel is the class painted last
    code = {CLASS_IDS[n]: (i + 1) << 4 | CLASS_IDS[n]
            for i, n in enumerate(PAINT_ORDER[cfg.convention, view])}
    shapes = body.shapes
    act2, top = rasterise_all(shapes, [attenuation(s.depth, s.thick, body.post) for s in shapes],
                              [code[s.label] if s.label else 0 for s in shapes], h, w, binned=True)
    lab = np.bitwise_and(top, 15, out=top).reshape(h, w)
    hot = hotspot_map(shapes, h, w)
    # soft tissue in the half-resolution frame: pixel centres move to (x - 0.5) / 2
    soft = [Shape(s.kind, (s.pts - 0.5) / 2, s.rad / 2, s.upt, angle=s.angle) for s in body.soft]
    act2 += rasterise_all(soft, [subj.soft * 4 * attenuation(0.5, 20, False)] * len(soft), None,
                          h // 2, w // 2, binned=False)[0]
    act2 = act2.reshape(h // 2, w // 2).astype(np.float32)
    sigma = subj.fwhm_mm / subj.mm_per_px / 2.355 / 2
    act2 = gaussian_filter1d(gaussian_filter1d(act2, sigma, 0, mode="constant"), sigma, 1,
                             mode="constant")
    np.maximum(act2, 0, out=act2)
    rng = np.random.default_rng(subj.body_seed + (2 + body.post,))
    total = subj.counts * (1.05 if body.post else 1.0)
    # x2 upsampling multiplies the sum by 4: the counts scale is set (and applied) at half res
    act2 *= total * 0.995 / max(4 * float(act2.sum(dtype=np.float64)), 1e-6)
    image = _noise(_upsample2(act2), total * 0.005 / (h * w), rng)
    return image, lab, keypoints(body, h, w), hot
