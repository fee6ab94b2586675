"""Input checks and intensity preprocessing of raw bone scan counts (not learned).

Convention: images are float (B, 1, H, W) raw counts >= 0. After :class:`Preprocess` they are
in [0, 1]. CLAHE runs on kornia's fast path under ``no_grad`` (docs/DESIGN.md: the differentiable
path is ~100x slower and the input needs no gradient).

>>> x = torch.rand(2, 1, 64, 32) * 500
>>> Preprocess()(x).shape
torch.Size([2, 1, 64, 32])
"""
from __future__ import annotations

import kornia
import torch
from torch import nn

from bonepatch import value_checks

NEGATIVE_POLICIES = ("error", "clamp")


def check_image(x: torch.Tensor, name: str = "image", negative: str = "error") -> torch.Tensor:
    """Check a (B, 1, H, W) float counts tensor; returns it (negatives clamped if ``negative="clamp"``).

    Raises ValueError on the wrong rank, channel count or dtype, on NaN / inf, and on negative
    counts unless ``negative="clamp"`` (for inputs where small negatives come from background
    subtraction or noise augmentation; they are set to 0). The value checks (NaN, negatives) run
    where :mod:`bonepatch.value_checks` allows (eager mode on CPU tensors by default: on a GPU they
    would be host-device syncs); ``negative="clamp"`` always clamps.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"{name} must be a (B, 1, H, W) tensor, got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x)}; "
                         "add the channel axis with x[:, None] or select one view")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be floating point, got {x.dtype}; use x.float()")
    if negative not in NEGATIVE_POLICIES:
        raise KeyError(f"unknown negative policy {negative!r}; choose one of {NEGATIVE_POLICIES}")
    if not value_checks.enabled(x):
        return x.clamp_min(0) if negative == "clamp" else x
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf counts; fix the data (e.g. torch.nan_to_num)")
    if (x < 0).any():
        if negative == "clamp":
            return x.clamp_min(0)
        raise ValueError(f"{name} has negative counts (min {x.min().item():.3g}); counts must be "
                         ">= 0, or build Preprocess(negative='clamp') to clamp them to 0")
    return x


def normalize_counts(x: torch.Tensor, percentile: float = 99.5, eps: float = 1e-6) -> torch.Tensor:
    """Robust per-image scaling to [0, 1]: divide by the image's ``percentile`` and clip.

    A blank image (percentile 0) falls back to its maximum, an all-zero image stays zero.

    >>> normalize_counts(torch.arange(100.).view(1, 1, 10, 10), 50).amax().item()
    1.0
    """
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    flat = x.flatten(1).float()  # (B, C*H*W)
    k = max(1, min(flat.shape[1], round(flat.shape[1] * percentile / 100)))
    scale = flat.kthvalue(k, dim=1).values  # (B,) percentile by order statistic (no full sort)
    scale = torch.where(scale > eps, scale, flat.amax(1))
    scale = scale.clamp_min(eps).view(-1, *([1] * (x.ndim - 1)))
    return (x / scale.to(x.dtype)).clamp(0, 1)


def clahe(x: torch.Tensor, clip_limit: float = 2.0, grid_size=(8, 8)) -> torch.Tensor:
    """Contrast-limited adaptive histogram equalisation of (B, 1, H, W) images in [0, 1].

    Wraps ``kornia.enhance.equalize_clahe`` (fast path, no gradient). Hydra types are converted
    (``clip_limit`` to float, ``grid_size`` to a tuple of ints).
    """
    grid = tuple(int(g) for g in grid_size)
    if len(grid) != 2:
        raise ValueError(f"grid_size must be two ints (rows, cols), got {grid_size}")
    with torch.no_grad():
        return kornia.enhance.equalize_clahe(x.clamp(0, 1), clip_limit=float(clip_limit),
                                             grid_size=grid)


class Preprocess(nn.Module):
    """Check input, normalise counts to [0, 1] by a robust percentile, then CLAHE; each switchable.

    With both steps off it is only the input check (the identity on valid input).
    """

    def __init__(self, normalize: bool = True, clahe: bool = True, clip_limit: float = 2.0,
                 grid_size=(8, 8), percentile: float = 99.5, negative: str = "error"):
        super().__init__()
        self.normalize, self.use_clahe = bool(normalize), bool(clahe)
        self.clip_limit, self.grid_size = float(clip_limit), tuple(int(g) for g in grid_size)
        self.percentile, self.negative = float(percentile), negative
        if negative not in NEGATIVE_POLICIES:
            raise KeyError(f"unknown negative policy {negative!r}; choose one of {NEGATIVE_POLICIES}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_image(x, negative=self.negative)
        if self.normalize:
            x = normalize_counts(x, self.percentile)
        if self.use_clahe:
            x = clahe(x, self.clip_limit, self.grid_size)
        return x

    def extra_repr(self) -> str:
        return (f"normalize={self.normalize}, clahe={self.use_clahe}, clip_limit={self.clip_limit}, "
                f"grid_size={self.grid_size}, percentile={self.percentile}")
