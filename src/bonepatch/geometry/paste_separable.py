"""Paste as two matrix products with static shapes (no host-device sync, ``torch.compile``-able).

The crop of an axis-aligned box is a separable bilinear resize, so its inverse warp is too:
canvas pixel (y, x) of patch n reads ``sum_ij Ay[n, y, i] P[n, i, j] Ax[n, x, j]``, where
``Ax`` (N, W, w) and ``Ay`` (N, H, h) are 1-D bilinear (tent) weights, zero outside the box.
The blend window of :func:`bonepatch.geometry.crop_paste.taper` is separable as well, so the
windowed numerator and denominator of :func:`paste_patches` become

    Q[n, i, c, x]   = a[n, c] tx[n, x] sum_j P[n, c, i, j] Ax[n, x, j]        (horizontal pass)
    num[b, c, y, x] = sum_{r, i} ty[b r, y] Ay[b r, y, i] Q[b r, i, c, x]     (one bmm per batch,
                                                                             summed over regions)
    den[b, c, y, x] = sum_r ty[b r, y] a[b r, c] tx[b r, x]

Every shape depends only on (B, R, C, h, w, H, W), never on the box values: one graph, no
``.item()``. The cost is dense (``B * H * R*h * C*W`` multiply-adds: ~5 GMAC per 1024 x 256 view
with 7 patches of 192^2 and 12 classes), cheap on a GPU's matrix units, slower than the
windowed ``"loop"`` paste on a CPU.

>>> import torch
>>> from bonepatch.geometry.crop_paste import crop_patches, paste_patches
>>> img = torch.rand(1, 1, 64, 32)
>>> boxes = torch.tensor([[0., 0.], [31., 0.], [31., 63.], [0., 63.]]).expand(1, 2, 4, 2)
>>> crops = crop_patches(img, boxes, (64, 32))
>>> a = paste_patches(crops, boxes, (64, 32), method="separable")
>>> torch.allclose(a, paste_patches(crops, boxes, (64, 32), method="loop"), atol=1e-5)
True
"""
from __future__ import annotations

import math

import torch


def taper_1d(g: torch.Tensor, flat: float = 0.5, floor: float = 0.05) -> torch.Tensor:
    """One axis of the flat-top blend window at normalised coordinates g (0 where |g| > 1)."""
    t = ((g.abs() - flat) / (1 - flat)).clamp(0, 1)  # 0 inside the flat top, 1 at the edge
    w = floor + (1 - floor) * 0.5 * (1 + torch.cos(math.pi * t))
    return w * (g.abs() <= 1)


def axis_weights(lo: torch.Tensor, side: torch.Tensor, samples: int, size: int, flat: float):
    """Bilinear weights (N, size, samples) and window (N, size) of one canvas axis.

    ``lo`` (N,): box start (the first sample's pixel), ``side`` (N,): box extent from the first to
    the last sample, ``samples``: patch pixels on the axis, ``size``: canvas pixels.
    """
    p = torch.arange(size, device=lo.device, dtype=lo.dtype)
    g = 2 * (p - lo[:, None]) / side[:, None] - 1  # (N, size) normalised patch coordinate
    u = (g + 1) * (0.5 * (samples - 1))  # (N, size) patch sample coordinate
    k = torch.arange(samples, device=lo.device, dtype=lo.dtype)
    a = (1 - (u[:, :, None] - k).abs()).clamp_min(0)  # tent = bilinear, zero padding outside
    return a, taper_1d(g, flat)


def paste_separable(patches: torch.Tensor, boxes: torch.Tensor, image_size, weights: torch.Tensor,
                    flat: float = 0.5):
    """Numerator (B, C, H, W) and denominator (B, C or 1, H, W) of the windowed blend.

    patches (B*R, C, h, w), boxes (B, R, 4, 2) axis-aligned, weights (B*R, C or 1). Computed in
    float32 (float64 inputs: float64) with autocast off (probabilities; TF32 matrix units where allowed).
    """
    b, r = boxes.shape[:2]
    n, c, h, w = patches.shape
    big_h, big_w = int(image_size[0]), int(image_size[1])
    dt = torch.promote_types(patches.dtype, torch.float32)  # float32, or float64 for gradcheck
    with torch.autocast(patches.device.type, enabled=False):
        p = patches.to(dt)
        fb = boxes.reshape(n, 4, 2).to(dt)
        x1, y1 = fb[:, 0, 0], fb[:, 0, 1]
        ax, tx = axis_weights(x1, fb[:, 2, 0] - x1, w, big_w, flat)  # (n, W, w), (n, W)
        ay, ty = axis_weights(y1, fb[:, 2, 1] - y1, h, big_h, flat)  # (n, H, h), (n, H)
        a = weights.to(dt)  # (n, C or 1)
        # horizontal pass, window and weights folded in: (n, C, h, w) x (n, W, w) -> (n, h, C, W)
        q = torch.einsum("ncij,nxj->nicx", p, ax * tx[:, :, None]) * a[:, None, :, None]
        # vertical pass, summed over each image's R patches: (B, H, R*h) @ (B, R*h, C*W)
        ay = (ay * ty[:, :, None]).view(b, r, big_h, h).transpose(1, 2).reshape(b, big_h, r * h)
        num = torch.bmm(ay, q.reshape(b, r * h, c * big_w)).view(b, big_h, c, big_w).transpose(1, 2)
        # denominator: (B, H, R) @ (B, R, C'*W)
        ad = (a[:, :, None] * tx[:, None, :]).view(b, r, a.shape[1] * big_w)
        den = torch.bmm(ty.view(b, r, big_h).transpose(1, 2), ad).view(b, big_h, a.shape[1], big_w).transpose(1, 2)
    return num, den
