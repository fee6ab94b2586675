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
"""
from __future__ import annotations

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
