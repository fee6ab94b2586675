"""Image statistics that tell a real whole-body bone scan from a phantom one (docs/phantom.md).

Every statistic is scale-free (the same under any linear intensity scaling), so counts, 16-bit
and 8-bit exports compare directly; the noise statistics still depend on the count level,
which is the point. ``as_8bit`` gives a phantom view the display mapping of the BS-80K JPG
exports: counts x k with k = 1e6 / total (each shared export sums to 1.00-1.03e6, its values
are integer counts x 2.9-3.6), rounded, clipped to 255, JPEG quality 100 (their tables are all 1).

>>> import numpy as np
>>> img = np.zeros((256, 64)); img[40:220, 16:48] = 100.0
>>> s = image_stats(img); round(s["body_w"], 2), round(s["noise"], 3)
(0.66, 0.0)
"""
from __future__ import annotations

import io

import numpy as np
from scipy.ndimage import binary_opening, gaussian_filter, uniform_filter

#: statistic -> what it measures (printed by phantom_realism.py, documented in docs/phantom.md)
STATS = {
    "noise": "median local residual std / local mean in bright body pixels (grain)",
    "slope": "power-spectrum slope, log P vs log f, f 0.04-0.35 cycles/px (blur vs noise)",
    "acorr": "lag-1 autocorrelation of the noise residual (correlated grain)",
    "body_w": "median row width of the body mask / image width (halo width)",
    "body_h": "body mask height / image height",
    "body_frac": "body mask pixels / image pixels",
    "p50": "median body pixel / 99th percentile of body pixels (smoothed)",
    "p90": "90th percentile body pixel / 99th percentile (smoothed)",
    "soft": "10th percentile body pixel / 99th percentile (smoothed): soft-tissue level",
    "hot": "body pixels above 3x the body median (smoothed)",
}


def as_8bit(image: np.ndarray, total: float = 1e6, jpeg: bool = True) -> np.ndarray:
    """(H, W) counts -> (H, W) float32 0..255, the mapping of the BS-80K exports (module doc)."""
    x = np.clip(np.rint(image * (total / max(float(image.sum()), 1e-6))), 0, 255).astype(np.uint8)
    if jpeg:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(x).save(buf, format="JPEG", quality=100)
        x = np.asarray(Image.open(buf))
    return x.astype(np.float32)


def body_mask(image: np.ndarray) -> np.ndarray:
    """(H, W) bool body: Gaussian (sigma 3 px) smoothed image above 4% of its 99.5th percentile
    of non-zero pixels, opened by a 5x5 square (drops isolated background events)."""
    g = gaussian_filter(image.astype(np.float64), 3.0)
    top = np.percentile(g[g > 0], 99.5) if np.any(g > 0) else 1.0
    return binary_opening(g > 0.04 * top, np.ones((5, 5), bool))


def noise_index(image: np.ndarray, body: np.ndarray) -> tuple[float, float]:
    """(grain, lag-1 autocorrelation) of the residual ``image - 3x3 mean`` over body pixels whose
    7x7 mean is above 20% of the body's 99th percentile of that mean."""
    x = image.astype(np.float64)
    m7 = uniform_filter(x, 7)
    r = x - uniform_filter(x, 3)
    sd = np.sqrt(np.maximum(uniform_filter(r * r, 7), 0))
    sel = body & (m7 > 0.2 * np.percentile(m7[body], 99)) if body.any() else body
    if not sel.any():
        return float("nan"), float("nan")
    sel[:, -1] = sel[-1] = False
    rr = r[sel]
    ac = 0.5 * (np.mean(rr * np.roll(r, -1, 1)[sel]) + np.mean(rr * np.roll(r, -1, 0)[sel]))
    return float(np.median(sd[sel] / m7[sel])), float(ac / max(np.mean(rr * rr), 1e-12))


def spectral_slope(image: np.ndarray, body: np.ndarray, lo: float = 0.04, hi: float = 0.35) -> float:
    """Slope of the radially averaged power spectrum (log-log) of the body's bounding box,
    mean-subtracted and Hann-windowed, over frequencies lo..hi cycles/px."""
    rows, cols = np.flatnonzero(body.any(1)), np.flatnonzero(body.any(0))
    if len(rows) < 16 or len(cols) < 16:
        return float("nan")
    x = image[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].astype(np.float64)
    x = (x - x.mean()) * np.outer(np.hanning(x.shape[0]), np.hanning(x.shape[1]))
    p = np.abs(np.fft.fft2(x)) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(x.shape[0]), np.fft.fftfreq(x.shape[1]), indexing="ij")
    f = np.hypot(fx, fy).ravel()
    edges = np.geomspace(lo, hi, 13)
    idx = np.digitize(f, edges)
    fm, pm = [], []
    for i in range(1, len(edges)):
        k = idx == i
        if k.any():
            fm.append(f[k].mean())
            pm.append(p.ravel()[k].mean())
    return float(np.polyfit(np.log(fm), np.log(np.maximum(pm, 1e-30)), 1)[0])


def image_stats(image: np.ndarray) -> dict[str, float]:
    """The :data:`STATS` of one (H, W) view (any linear intensity scale)."""
    img = np.asarray(image, np.float64)
    body = body_mask(img)
    h, w = img.shape
    out = dict.fromkeys(STATS, float("nan"))
    if body.sum() < 100:
        return out
    out["noise"], out["acorr"] = noise_index(img, body)
    out["slope"] = spectral_slope(img, body)
    rows = np.flatnonzero(body.any(1))
    widths = body.sum(1)[rows]
    out["body_w"] = float(np.median(widths)) / w
    out["body_h"] = float(rows[-1] - rows[0] + 1) / h
    out["body_frac"] = float(body.mean())
    g = gaussian_filter(img, 1.5)[body]
    p = np.percentile(g, [10, 50, 90, 99])
    out["p50"], out["p90"], out["soft"] = p[1] / p[3], p[2] / p[3], p[0] / p[3]
    out["hot"] = float(np.mean(g > 3 * p[1]))
    return out


def median_stats(images) -> dict[str, float]:
    """Per-statistic median over views (NaNs ignored)."""
    rows = [image_stats(im) for im in images]
    return {k: float(np.nanmedian([r[k] for r in rows])) for k in STATS}
