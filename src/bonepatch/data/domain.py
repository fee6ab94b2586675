"""Training-time domain randomisation of scan intensities (kornia), for phantom -> real transfer.

What real data brings that a clean phantom does not: other count levels, other matrices
(a 512x128 acquisition upsampled: correlated grain), other blur, non-linear display curves of
exports, hot spots saturated by windowing, 8-bit quantisation and JPEG compression. Each op is
drawn per sample with its probability, in this order, on (B, 1, H, W) counts >= 0:

1. ``thin``: binomial count thinning to a fraction of the counts (a lower-count scan, exact
   Poisson statistics for Poisson input);
2. ``resample``: 2x2 mean then nearest upsampling (a half-size matrix shown at full size);
3. ``blur``: Gaussian blur, sigma in pixels (``kornia.augmentation.RandomGaussianBlur``);
4. ``gamma``: intensity curve ``x -> x ** g`` on the [0, 1]-scaled image (``RandomGamma``);
5. ``saturate``: clip at a fraction of the image's scale (windowed exports);
6. ``quantize``: round to L grey levels over the scale (8-bit exports have ~40-255 in use);
7. ``jpeg``: JPEG compression (``RandomJPEG``; H and W multiples of 16, else skipped).

Images are scaled by their ``percentile`` (per sample) to [0, 1] for 3-7 and scaled back, so
the output is still counts-like (``Preprocess`` normalises anyway). Masks and keypoints are
untouched. Deterministic under ``torch.manual_seed``; ``enabled=False`` returns the batch as is.

>>> b = {"image": torch.poisson(torch.full((2, 1, 64, 32), 20.0)), "mask": torch.zeros(2, 64, 32)}
>>> DomainRandomization()(b)["image"].shape
torch.Size([2, 1, 64, 32])
"""
from __future__ import annotations

import kornia.augmentation as K
import torch
import torch.nn.functional as F
from torch import nn


def _draw(b: int, p: float, device) -> torch.Tensor:
    """(B,) bool: which samples get an op of probability p."""
    return torch.rand(b, device=device) < p


def _uniform(b: int, lo: float, hi: float, device) -> torch.Tensor:
    return torch.empty(b, device=device).uniform_(float(lo), float(hi))


def _scale(x: torch.Tensor, percentile: float) -> torch.Tensor:
    """(B, 1, 1, 1) per-image ``percentile`` of the counts (max where that is 0)."""
    flat = x.flatten(1)
    k = max(1, min(flat.shape[1], round(flat.shape[1] * percentile / 100)))
    s = flat.kthvalue(k, dim=1).values
    s = torch.where(s > 0, s, flat.amax(1)).clamp_min(1e-6)
    return s.view(-1, 1, 1, 1)


def _where(mask: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.view(-1, 1, 1, 1), new, old)


def domain_randomize(image: torch.Tensor, p: dict, thin=(0.25, 1.0), blur_sigma=(0.4, 1.6),
                     gamma=(0.6, 1.5), saturate=(0.35, 1.0), levels=(40, 255), jpeg_quality=(60, 100),
                     percentile: float = 99.9) -> torch.Tensor:
    """Randomised copy of (B, 1, H, W) counts ``image`` (module docstring). ``p``: per-op
    probabilities ``{"thin", "resample", "blur", "gamma", "saturate", "quantize", "jpeg"}``
    (missing = 0); the ranges are (min, max) of each op's parameter."""
    if image.ndim != 4 or image.shape[1] != 1:
        raise ValueError(f"domain_randomize wants (B, 1, H, W) counts, got {tuple(image.shape)}")
    x, (b, _, h, w), dev = image.clamp_min(0).float(), image.shape, image.device
    if p.get("thin", 0):
        on = _draw(b, p["thin"], dev)
        f = _uniform(b, *thin, dev).view(-1, 1, 1, 1).expand_as(x)
        x = _where(on, torch.binomial(x.round(), f.contiguous()), x)
    if p.get("resample", 0) and h % 2 == 0 and w % 2 == 0:
        on = _draw(b, p["resample"], dev)
        x = _where(on, F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="nearest"), x)
    s = _scale(x, percentile)
    y = x / s
    if p.get("blur", 0):
        y = K.RandomGaussianBlur((9, 9), tuple(blur_sigma), p=p["blur"])(y)
    hi = y.clamp(0, 1)
    if p.get("gamma", 0):  # the curve acts on [0, 1]; values above the scale keep their excess
        hi = K.RandomGamma(tuple(gamma), p=p["gamma"])(hi)
        y = hi + (y - 1).clamp_min(0)
    if p.get("saturate", 0):
        on = _draw(b, p["saturate"], dev)
        c = _uniform(b, *saturate, dev).view(-1, 1, 1, 1)
        y = _where(on, torch.minimum(y, c) / c, y)
    y = y.clamp(0, 1) if p.get("quantize", 0) or p.get("jpeg", 0) else y
    if p.get("quantize", 0):
        on = _draw(b, p["quantize"], dev)
        n = _uniform(b, *levels, dev).round().view(-1, 1, 1, 1)
        y = _where(on, torch.round(y * n) / n, y)
    if p.get("jpeg", 0) and h % 16 == 0 and w % 16 == 0:
        rgb = y.expand(-1, 3, -1, -1)  # kornia's codec wants RGB; grey in, grey (Y) out
        y = K.RandomJPEG(tuple(float(q) for q in jpeg_quality), p=p["jpeg"])(rgb)[:, :1].clamp(0, 1)
    return (y * s).to(image.dtype)


class DomainRandomization(nn.Module):
    """:func:`domain_randomize` on a batch dict's ``image`` (the LightningModule's ``augment``);
    ``augment``: an optional module applied first (e.g. ``augment.BatchAugment`` geometry)."""

    def __init__(self, enabled: bool = True, p: dict | None = None, thin=(0.25, 1.0),
                 blur_sigma=(0.4, 1.6), gamma=(0.6, 1.5), saturate=(0.35, 1.0), levels=(40, 255),
                 jpeg_quality=(60, 100), percentile: float = 99.9, augment: nn.Module | None = None):
        super().__init__()
        self.enabled, self.augment = bool(enabled), augment
        default = {"thin": 0.5, "resample": 0.15, "blur": 0.3, "gamma": 0.5, "saturate": 0.3,
                   "quantize": 0.4, "jpeg": 0.1}
        self.p = {**default, **dict(p or {})}
        unknown = set(self.p) - set(default)
        if unknown or not all(0 <= v <= 1 for v in self.p.values()):
            raise ValueError(f"DomainRandomization.p: probabilities in [0, 1] for {sorted(default)}; "
                             f"got {self.p}")
        self.kwargs = dict(thin=tuple(thin), blur_sigma=tuple(blur_sigma), gamma=tuple(gamma),
                           saturate=tuple(saturate), levels=tuple(levels),
                           jpeg_quality=tuple(jpeg_quality), percentile=float(percentile))

    def forward(self, batch: dict) -> dict:
        if self.augment is not None:
            batch = self.augment(batch)
        if not self.enabled:
            return batch
        return dict(batch, image=domain_randomize(batch["image"], self.p, **self.kwargs))

    def extra_repr(self) -> str:
        return f"enabled={self.enabled}, p={self.p}"
