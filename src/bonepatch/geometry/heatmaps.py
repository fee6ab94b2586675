"""Keypoint targets (Gaussian heatmaps, SimCC bins) and their decoders.

Coordinates: pixels (x, y), pixel centres at integers. A grid of ``n`` cells that covers an image
axis of ``size`` pixels maps with the half-pixel rule ``g = (x + 0.5) * n / size - 0.5``
(the rule of ``F.interpolate(..., align_corners=False)``), so heatmaps at stride 4 and SimCC bins
with a split ratio are both "grids" over the input image.

>>> kp = torch.tensor([[[10.3, 20.7]]])                       # (B=1, K=1, 2) in grid pixels
>>> hm = render_heatmaps(kp, (32, 16), sigma=2.0); hm.shape
torch.Size([1, 1, 32, 16])
>>> xy, conf = decode_heatmaps(hm, mode="local"); xy.shape, conf.shape
(torch.Size([1, 1, 2]), torch.Size([1, 1]))
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from kornia.geometry.subpix import spatial_soft_argmax2d


def to_grid(x: torch.Tensor, size: float, n: float) -> torch.Tensor:
    """Pixel coordinate on an axis of ``size`` pixels -> coordinate on a grid of ``n`` cells."""
    return (x + 0.5) * (n / size) - 0.5


def from_grid(g: torch.Tensor, size: float, n: float) -> torch.Tensor:
    """Inverse of :func:`to_grid`."""
    return (g + 0.5) * (size / n) - 0.5


def render_heatmaps(keypoints: torch.Tensor, size, sigma: float = 2.0) -> torch.Tensor:
    """Unnormalised Gaussians (peak 1) at ``keypoints`` (B, K, 2) grid pixels -> (B, K, h, w)."""
    h, w = int(size[0]), int(size[1])
    ys = torch.arange(h, device=keypoints.device, dtype=keypoints.dtype)
    xs = torch.arange(w, device=keypoints.device, dtype=keypoints.dtype)
    gx = torch.exp(-(xs - keypoints[..., :1]) ** 2 / (2 * sigma ** 2))  # (B, K, w)
    gy = torch.exp(-(ys - keypoints[..., 1:]) ** 2 / (2 * sigma ** 2))  # (B, K, h)
    return gy[..., :, None] * gx[..., None, :]  # separable outer product (B, K, h, w)


def render_simcc(keypoints: torch.Tensor, bins, sigma: float = 4.0):
    """SimCC targets: per-axis normalised Gaussians over ``bins = (n_y, n_x)`` cells.

    ``keypoints`` (B, K, 2) are in bin units (use :func:`to_grid`). ``sigma`` is in bins.
    Returns ``(target_x (B, K, n_x), target_y (B, K, n_y))``, each summing to 1 over the bins.
    """
    out = []
    for axis, n in ((0, int(bins[1])), (1, int(bins[0]))):
        grid = torch.arange(n, device=keypoints.device, dtype=keypoints.dtype)
        logit = -(grid - keypoints[..., axis:axis + 1]) ** 2 / (2 * sigma ** 2)  # (B, K, n)
        out.append(torch.softmax(logit, -1))  # normalised, finite even far outside the grid
    return out[0], out[1]


def _local_window(flat_idx: torch.Tensor, h: int, w: int, radius: int):
    """Rows, cols (B, K, 2r+1) of a window around each argmax, clamped, and its in-grid mask."""
    cy, cx = flat_idx // w, flat_idx % w  # (B, K)
    d = torch.arange(-radius, radius + 1, device=flat_idx.device)
    wy, wx = cy[..., None] + d, cx[..., None] + d  # (B, K, 2r+1)
    valid = ((wy >= 0) & (wy < h))[..., :, None] & ((wx >= 0) & (wx < w))[..., None, :]
    return wy.clamp(0, h - 1), wx.clamp(0, w - 1), valid  # valid: (B, K, 2r+1, 2r+1)


def decode_heatmaps(heatmaps: torch.Tensor, mode: str = "soft", temperature: float = 0.05,
                    radius: int | None = None, sigma: float = 2.0):
    """Heatmaps (B, K, h, w) -> keypoints (B, K, 2) in grid pixels and confidence (B, K).

    Modes (both differentiable w.r.t. the heatmap values):
      * ``"soft"``: global spatial soft-argmax of ``heatmap / temperature`` (kornia).
      * ``"local"``: argmax, then the heatmap-weighted mean (relu'd values) in a window of
        ``radius`` (default ``ceil(3 sigma)``) around it: sharper, sub-pixel, for inference.
    Confidence is the heatmap maximum clipped to [0, 1].
    """
    decoders = {"soft", "local"}
    if mode not in decoders:
        raise KeyError(f"unknown heatmap decode {mode!r}; choose one of {sorted(decoders)}")
    b, k, h, w = heatmaps.shape
    flat = heatmaps.flatten(2)  # (B, K, h*w)
    peak, idx = flat.max(-1)
    conf = peak.clamp(0, 1)
    if mode == "soft":
        xy = spatial_soft_argmax2d(heatmaps, float(temperature), normalized_coordinates=False)
        return xy, conf
    r = int(math.ceil(3 * sigma)) if radius is None else int(radius)
    wy, wx, valid = _local_window(idx, h, w, r)
    # gather the window: rows wy (B,K,2r+1) x cols wx (B,K,2r+1) -> (B, K, 2r+1, 2r+1)
    lin = wy[..., :, None] * w + wx[..., None, :]
    vals = flat.gather(-1, lin.flatten(2)).view(b, k, 2 * r + 1, 2 * r + 1).clamp_min(0)
    vals = vals * valid  # cells outside the grid do not count (clamped duplicates)
    vals = vals + 1e-6 * (vals.sum((-2, -1), keepdim=True) <= 0)  # a flat window -> its centre
    wsum = vals.sum((-2, -1))
    x = (vals * wx[..., None, :].to(vals)).sum((-2, -1)) / wsum
    y = (vals * wy[..., :, None].to(vals)).sum((-2, -1)) / wsum
    return torch.stack([x, y], -1), conf


def decode_simcc(logits_x: torch.Tensor, logits_y: torch.Tensor, radius: int | None = None,
                 sigma: float = 4.0):
    """SimCC logits (B, K, n_x), (B, K, n_y) -> keypoints (B, K, 2) in bins, confidence (B, K).

    The softmax expectation over all bins (``radius=None``, differentiable) or over a window of
    ``radius`` bins around the argmax (sharper, for inference). Confidence: the peak probability
    divided by the peak of a target Gaussian of ``sigma`` bins, clipped to [0, 1].
    """
    coords, peaks = [], []
    for logits in (logits_x, logits_y):
        p = torch.softmax(logits.float(), -1)  # (B, K, n)
        peaks.append(p.amax(-1))
        grid = torch.arange(p.shape[-1], device=p.device, dtype=p.dtype)
        if radius is not None:
            centre = p.argmax(-1, keepdim=True)
            p = p * ((grid - centre).abs() <= radius)  # keep the window around the argmax
            p = p / p.sum(-1, keepdim=True).clamp_min(1e-12)
        coords.append((p * grid).sum(-1))
    target_peak = 1.0 / (math.sqrt(2 * math.pi) * sigma)
    conf = (torch.sqrt(peaks[0] * peaks[1]) / target_peak).clamp(0, 1)
    return torch.stack(coords, -1), conf


def heatmap_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """HRNet loss: per-keypoint MSE (B, K, h, w) weighted by visibility (B, K), mean over K."""
    per_kp = ((pred.float() - target) ** 2).mean((-2, -1))  # (B, K)
    return (per_kp * weight).sum() / weight.numel() * 0.5


def simcc_loss(logits_x, logits_y, target_x, target_y, weight: torch.Tensor) -> torch.Tensor:
    """RTMPose loss: KL(target || softmax(logits)) per axis, weighted by visibility (B, K)."""
    def kl(logits, target):  # (B, K, n) -> (B, K)
        return F.kl_div(torch.log_softmax(logits.float(), -1), target, reduction="none").sum(-1)
    per_kp = kl(logits_x, target_x) + kl(logits_y, target_y)
    return (per_kp * weight).sum() / weight.sum().clamp_min(1.0)
