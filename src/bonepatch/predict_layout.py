"""Reading the layout of an exported scan: polarity, edge lines and caption strips, orientation,
side-by-side panels, truncation, and the undistorted fit into the model's frame.

All functions take float (H, W) pixel values and only look; :mod:`bonepatch.predict_prepare`
applies what they find. Thresholds are fractions of the image's own intensity range
(percentiles), so they hold for raw counts and for 8-bit exports alike; they were set on the
phantom and checked on real scans (docs/predict.md, "How the input is read").
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from .geometry.resize import Letterbox, fit_letterbox

FOREGROUND_LEVEL = 0.1  # foreground: smoothed image above 10% of its 5th..99.5th percentile range
INVERTED_ABOVE = 0.6  # inverted when the histogram's mode lies above 60% of the intensity range
LANDSCAPE_ELONGATION = 1.5  # a body bounding box this much wider than tall lies horizontally
HEAD_SHARE = 0.56  # share of the counts in one half of a lying body that marks the head end
EDGE_LEVEL = 0.05  # a cut body: foreground at this level (faint shins, soft tissue count) ...
EDGE_BAND = 0.01  # ... in the outer rows at that edge (fraction of the height, >= 1 row) ...
EDGE_COVER = 0.03  # ... covering at least this fraction of the width
MAX_CROSSING = 0.3  # ... and the two bodies touch across the split in at most 30% of the rows (arms at the edges)
GAP_LEVEL = 0.25  # side-by-side views: columns whose foreground share is under 25% of the busiest column's


def smooth(image: np.ndarray) -> np.ndarray:
    """Gaussian-smoothed copy, sigma growing with the image size (1 px at 128 px, 2 at 256...)."""
    return gaussian_filter(np.asarray(image, np.float32), max(1.0, min(image.shape) / 128))


def foreground(image: np.ndarray, level: float = FOREGROUND_LEVEL) -> np.ndarray:
    """(H, W) bool: where the smoothed image rises above ``level`` of its 5th..99.5th percentile range."""
    s = smooth(image)
    lo, hi = np.percentile(s, [5, 99.5])
    return s > lo + level * max(hi - lo, 1e-6)


def runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True in a 1-D bool array."""
    d = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def body_box(fg: np.ndarray) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1) of the foreground (0.5th..99.5th percentile of its pixel rows / columns), or None."""
    if fg.sum() < 4:
        return None
    ys, xs = np.nonzero(fg)
    (y0, y1), (x0, x1) = np.percentile(ys, [0.5, 99.5]), np.percentile(xs, [0.5, 99.5])
    return int(y0), int(y1) + 1, int(x0), int(x1) + 1


def inverted_score(image: np.ndarray) -> float:
    """Where the most common value (the background) lies in the 0.5..99.5th percentile range:
    ~0 for a bone scan (dark background), ~1 for a dark-bone-on-white export."""
    lo, hi = np.percentile(image, [0.5, 99.5])
    if hi <= lo:
        return 0.0
    hist, _ = np.histogram(image, bins=32, range=(lo, hi))
    return (int(hist.argmax()) + 0.5) / 32


def line_masks(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows (H,), cols (W,)) bool: straight lines, bright and uniform over >= 60% of their length
    (borders, separators, caption strips); anatomy never is."""
    lo, hi = np.percentile(image, [0.5, 99.9])
    span = max(hi - lo, 1e-6)

    def lines(a):
        med = np.median(a, 1)
        near = np.abs(a - med[:, None]) <= 0.03 * span
        return (near.mean(1) >= 0.6) & (med >= lo + 0.25 * span)

    return lines(image), lines(image.T)


def caption_rows(image: np.ndarray) -> tuple[int, int]:
    """[y0, y1) of the rows to keep: bands at the top or bottom that are separate from the body
    (rows empty even of faint soft tissue between), low (<= 12% of the height) and near the edge
    (text, labels, markers) are left out."""
    h = image.shape[0]
    bands = runs(foreground(image).mean(1) > 0.005)
    if len(bands) < 2:
        return 0, h
    empty = ~foreground(image, EDGE_LEVEL).any(1)  # rows without even faint activity
    main = max(bands, key=lambda b: float(image[b[0]:b[1]].sum()))
    y0, y1 = 0, h
    for b in bands:
        if b[1] > main[0] or b[0] > y0 + 0.05 * h or b[1] - b[0] > 0.12 * h or not empty[b[1]:main[0]].any():
            break
        y0 = b[1]
    for b in reversed(bands):
        if b[0] < main[1] or b[1] < y1 - 0.05 * h or b[1] - b[0] > 0.12 * h or not empty[main[1]:b[0]].any():
            break
        y1 = b[0]
    return y0, y1


def lying_head(image: np.ndarray) -> tuple[bool, str | None, float]:
    """(the body lies horizontally, 'left' | 'right' | None where its head is, share of the
    counts in the left half of the body box). The head end carries the skull, the shoulders,
    ribs and spine: clearly more counts than the legs."""
    h, w = image.shape
    box = None if w <= h else body_box(foreground(image))
    if box is None:
        return False, None, 0.5
    y0, y1, x0, x1 = box
    if (x1 - x0) < LANDSCAPE_ELONGATION * (y1 - y0):
        return False, None, 0.5
    body = np.clip(image[y0:y1, x0:x1] - np.percentile(image, 5), 0, None)
    mid = (x1 - x0) // 2
    share = float(body[:, :mid].sum() / max(body.sum(), 1e-6))
    head = "left" if share >= HEAD_SHARE else "right" if share <= 1 - HEAD_SHARE else None
    return True, head, share


def panel_split(image: np.ndarray) -> int | None:
    """The column between two side-by-side views (anterior | posterior), or None for one view.

    Two bodies: a gap of (nearly) empty columns near the middle (30-70% of the width); on each
    side a body of similar height (>= 0.7x), width (>= 0.5x) and counts (>= 0.25x), with its
    head inside the frame (not cut at the top: two legs of a partial scan look like two bodies
    otherwise); the two touching in at most ``MAX_CROSSING`` of the rows. Split at the middle
    of the image when that lies in the gap (equal panels), else at the gap's middle.
    """
    h, w = image.shape
    if w < 0.3 * h:
        return None
    fg = foreground(image)
    cols = fg.mean(0)
    empty = cols <= GAP_LEVEL * max(cols.max(), 1e-6)
    gaps = [g for g in runs(empty) if 0 < g[0] and g[1] < w and 0.3 * w <= (g[0] + g[1]) / 2 <= 0.7 * w]
    if not gaps:
        return None
    g0, g1 = max(gaps, key=lambda g: g[1] - g[0])
    cut = w // 2 if g0 <= w // 2 <= g1 else (g0 + g1) // 2  # equal panels when the gap allows
    sides = []
    for sl in (slice(0, cut), slice(cut, w)):
        box = body_box(fg[:, sl])
        if box is None or edge_cuts(image[:, sl])[0]:
            return None
        sides.append((box[1] - box[0], box[3] - box[2], float(np.clip(image[:, sl], 0, None).sum())))
    (ha, wa, ca), (hb, wb, cb) = sides
    if not (min(ha, hb) >= 0.7 * max(ha, hb) and min(wa, wb) >= 0.5 * max(wa, wb)
            and min(ca, cb) >= 0.25 * max(ca, cb)):
        return None
    low = foreground(image, EDGE_LEVEL)
    rows = np.flatnonzero(low.any(1))
    crossing = low[rows[0]:rows[-1] + 1, max(cut - 1, 0):cut + 2].any(1).mean()
    return cut if crossing <= MAX_CROSSING else None


def edge_cuts(image: np.ndarray) -> tuple[bool, bool]:
    """(cut at the top, cut at the bottom): the body reaches that edge (foreground in the outer
    ``EDGE_BAND`` of rows covering >= ``EDGE_COVER`` of the width), as a truncated field of view does."""
    fg = foreground(image, EDGE_LEVEL)
    band = max(1, round(EDGE_BAND * fg.shape[0]))
    return bool(fg[:band].mean(1).max() >= EDGE_COVER), bool(fg[-band:].mean(1).max() >= EDGE_COVER)


def plan_fit(image: np.ndarray, size: tuple[int, int]) -> tuple[Letterbox, str]:
    """The undistorted placement of an upright view (h, w) in the model's (H, W) frame, and a note.

    - as tall as the model's aspect or taller: scaled to the frame height, centred, padded at the sides;
    - wider, body cut by the top / bottom edge (truncated field of view): scaled to the frame width
      (the camera's field width, so the anatomy keeps its whole-body scale) and padded on the cut
      side (below a body cut at the bottom, above one cut at the top), so nothing is predicted
      beyond the field of view;
    - wider, whole body inside: scaled to the frame height and cropped at the sides when only
      empty columns go (centred on the body), else scaled to the width and padded above and below.
    """
    (h, w), (H, W) = image.shape, size
    if h * W >= w * H:
        box = fit_letterbox((h, w), size)
        return box, "" if box.inner[1] >= 0.98 * W else f"padded at the sides (aspect {h / w:.2f} > {H / W:.2f})"
    top, bottom = edge_cuts(image)
    if top or bottom:
        vertical = "bottom" if top and not bottom else "top" if bottom and not top else "center"
        box = fit_letterbox((h, w), size, scale=W / w, vertical=vertical)
        where = {"top": "below", "bottom": "above", "center": "above and below"}[vertical]
        cut = " and ".join(e for e, c in (("top", top), ("bottom", bottom)) if c)
        return box, f"partial body (cut at the {cut} edge): kept at the frame-width scale, padded {where}"
    fg_box = body_box(foreground(image))
    window = W * h / H  # source columns that fill the frame at the height scale
    if fg_box is not None and fg_box[3] - fg_box[2] <= 0.95 * window:
        centre = ((fg_box[2] + fg_box[3] - 1) / 2, (h - 1) / 2)
        box = fit_letterbox((h, w), size, scale=H / h, centre=centre)
        return box, f"{w - round(window)} empty columns cropped (aspect {h / w:.2f} < {H / W:.2f})"
    box = fit_letterbox((h, w), size, scale=W / w)
    return box, f"scaled to the frame width, padded above and below (aspect {h / w:.2f} < {H / W:.2f})"
