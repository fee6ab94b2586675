"""The one rule for resizing a scan: counts, label maps and points move together.

Counts are resampled bilinearly with antialiasing and scaled so the total is preserved (a scan
holds photon counts, not brightness); label maps are resampled nearest; points follow the pixel
centre convention (centre of pixel ``[row, col]`` at ``(x=col, y=row)``), so
``x' = (x + 0.5) * W' / W - 0.5``.

>>> x = torch.ones(1, 1, 8, 4)
>>> y = resize_counts(x, (4, 2)); y.shape, float(y.sum())
(torch.Size([1, 1, 4, 2]), 32.0)
>>> scale_points(torch.tensor([[0., 0.], [3., 7.]]), (8, 4), (4, 2)).tolist()
[[-0.25, -0.25], [1.25, 3.25]]

A letterbox places an image in a frame of another aspect without distortion: one scale factor,
then padding (or cropping where the scaled image overhangs the frame); points and arrays map
back exactly through its inverse.

>>> box = fit_letterbox((6, 4), (8, 4), vertical="top"); box.inner, box.top, box.left
((6, 4), 0, 0)
>>> letterbox(np.ones((6, 4), np.float32), box)[:, 0].tolist()
[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


def resize_counts(image, size: tuple[int, int]):
    """Counts (..., H, W) (torch or numpy) -> (..., H', W') with the total preserved (same type)."""
    is_numpy = isinstance(image, np.ndarray)
    x = torch.from_numpy(np.ascontiguousarray(image, np.float32)) if is_numpy else image
    (h, w), (nh, nw) = x.shape[-2:], tuple(int(s) for s in size)
    if (h, w) == (nh, nw):
        return image
    lead = x.shape[:-2]
    y = F.interpolate(x.reshape(-1, 1, h, w).float(), size=(nh, nw), mode="bilinear", antialias=True,
                      align_corners=False)  # (N,1,H',W')
    y = (y.clamp_min(0) * (h * w / (nh * nw))).reshape(*lead, nh, nw)
    return y.numpy() if is_numpy else y.to(x.dtype)


def resize_labels(labels, size: tuple[int, int]):
    """Label ids (..., H, W) (torch or numpy) -> (..., H', W'), nearest (same type and dtype)."""
    is_numpy = isinstance(labels, np.ndarray)
    x = torch.from_numpy(np.ascontiguousarray(labels)) if is_numpy else labels
    (h, w), (nh, nw) = x.shape[-2:], tuple(int(s) for s in size)
    if (h, w) == (nh, nw):
        return labels
    y = F.interpolate(x.reshape(-1, 1, h, w).float(), size=(nh, nw), mode="nearest-exact")
    y = y.reshape(*x.shape[:-2], nh, nw).to(x.dtype)
    return y.numpy() if is_numpy else y


def scale_points(points, from_size: tuple[int, int], to_size: tuple[int, int]):
    """Points (..., >=2) x, y (torch or numpy; later columns kept) from an (H, W) image to (H', W')."""
    (h, w), (nh, nw) = from_size, to_size
    out = points.clone() if isinstance(points, torch.Tensor) else np.array(points, np.float32, copy=True)
    out[..., 0] = (out[..., 0] + 0.5) * (nw / w) - 0.5
    out[..., 1] = (out[..., 1] + 0.5) * (nh / h) - 0.5
    return out


@dataclass(frozen=True)
class Letterbox:
    """An (h, w) image in an (H, W) frame: resized to ``inner`` (one scale factor, rounded to
    whole pixels), its top-left pixel corner at row ``top``, column ``left`` of the frame.
    Offsets < 0 or an inner box overhanging the frame mean that part is cropped away."""

    src: tuple[int, int]
    dst: tuple[int, int]
    inner: tuple[int, int]
    top: int
    left: int

    @property
    def scale(self) -> float:
        return self.inner[0] / self.src[0]


_PLACES = {"top": 0.0, "left": 0.0, "center": 0.5, "bottom": 1.0, "right": 1.0}


def fit_letterbox(src: tuple[int, int], dst: tuple[int, int], scale: float | None = None,
                  vertical: str = "center", horizontal: str = "center", centre: tuple[float, float] | None = None
                  ) -> Letterbox:
    """Letterbox of an ``src`` (h, w) image in a ``dst`` (H, W) frame.

    ``scale`` None = the largest that fits (min(H/h, W/w): pads, never crops). ``vertical``
    (top | center | bottom) and ``horizontal`` (left | center | right) say where the scaled image
    sits when it is smaller than the frame; ``centre`` (x, y) in source pixels, when given,
    is put at the frame's centre instead (clamped so no frame pixel is left empty needlessly).
    """
    (h, w), (H, W) = (int(v) for v in src), (int(v) for v in dst)
    s = min(H / h, W / w) if scale is None else float(scale)
    ih, iw = max(1, round(h * s)), max(1, round(w * s))
    top, left = round((H - ih) * _PLACES[vertical]), round((W - iw) * _PLACES[horizontal])
    if centre is not None:  # overhanging axes: that point at the frame's centre, within the image
        cx, cy = ((centre[0] + 0.5) * iw / w, (centre[1] + 0.5) * ih / h)
        if iw > W:
            left = int(np.clip(round(W / 2 - cx), W - iw, 0))
        if ih > H:
            top = int(np.clip(round(H / 2 - cy), H - ih, 0))
    return Letterbox((h, w), (H, W), (ih, iw), top, left)


def _window(box: Letterbox):
    """(frame slice, inner slice) of the part of the inner box inside the frame (rows, cols)."""
    (H, W), (ih, iw) = box.dst, box.inner
    r0, r1, c0, c1 = max(box.top, 0), min(box.top + ih, H), max(box.left, 0), min(box.left + iw, W)
    return ((slice(r0, r1), slice(c0, c1)),
            (slice(r0 - box.top, r1 - box.top), slice(c0 - box.left, c1 - box.left)))


def letterbox(image, box: Letterbox, fill: float = 0.0):
    """Counts (..., h, w) (torch or numpy) -> (..., H, W): resized (total preserved), placed, padded with ``fill``."""
    inner = resize_counts(image, box.inner)
    (fr, fc), (ir, ic) = _window(box)
    if isinstance(inner, np.ndarray):
        out = np.full((*inner.shape[:-2], *box.dst), fill, inner.dtype)
    else:
        out = torch.full((*inner.shape[:-2], *box.dst), fill, dtype=inner.dtype, device=inner.device)
    out[..., fr, fc] = inner[..., ir, ic]
    return out


def unletterbox(array, box: Letterbox, fill: float = 0.0):
    """The inverse for scores / probabilities: (..., H, W) (torch or numpy) -> (..., h, w).

    The inner box is taken out of the frame (its cropped parts filled with ``fill``) and resized
    bilinearly to the source size (values, not counts: no rescaling of the total)."""
    is_numpy = isinstance(array, np.ndarray)
    x = torch.from_numpy(np.ascontiguousarray(array)) if is_numpy else array
    (fr, fc), (ir, ic) = _window(box)
    inner = torch.full((*x.shape[:-2], *box.inner), fill, dtype=x.dtype, device=x.device)
    inner[..., ir, ic] = x[..., fr, fc]
    lead, (h, w) = inner.shape[:-2], box.src
    if tuple(box.inner) != (h, w):
        inner = F.interpolate(inner.reshape(-1, 1, *box.inner).float(), size=(h, w), mode="bilinear",
                              align_corners=False).reshape(*lead, h, w).to(x.dtype)
    return inner.numpy() if is_numpy else inner


def letterbox_points(points, box: Letterbox):
    """Points (..., >=2) x, y of the source image -> frame pixels (torch or numpy)."""
    out = scale_points(points, box.src, box.inner)
    out[..., 0] += box.left
    out[..., 1] += box.top
    return out


def unletterbox_points(points, box: Letterbox):
    """Frame pixels -> source image pixels: the exact inverse of :func:`letterbox_points`."""
    out = points.clone() if isinstance(points, torch.Tensor) else np.array(points, np.float32, copy=True)
    out[..., 0] -= box.left
    out[..., 1] -= box.top
    return scale_points(out, box.inner, box.src)
