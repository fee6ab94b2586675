"""Region boxes from keypoints, differentiable w.r.t. the keypoints.

Boxes are kornia's corners clockwise from top-left (tl, tr, br, bl) in pixels (x, y):
``(B, R, 4, 2)``. A box of extent ``(w, h)`` centred at ``(cx, cy)`` has corners
``cx -/+ w/2``, ``cy -/+ h/2``; the crop samples ``patch_size`` points from corner to corner.

Rules (per region, see :func:`boxes_from_keypoints`): soft extents of the region's confident
keypoints + a relative margin; blended with an anatomical prior box when fewer than two
keypoints are confident; grown to the patch aspect ratio; at least ``min_size`` pixels.
Boxes may extend past the image (the crop pads with zeros).

>>> kp = DEFAULT_KEYPOINT_PRIOR[None] * torch.tensor([256., 1024.])     # (1, K, 2)
>>> boxes_from_keypoints(kp, torch.ones(1, 16), DEFAULT_PATCHES, (192, 192)).shape
torch.Size([1, 7, 4, 2])
"""
from __future__ import annotations

import torch
from torch import nn

from bonepatch.anatomy import DEFAULT_PATCHES, KEYPOINTS, NUM_KEYPOINTS, RegionPatch

# A mean upright body (x / W, y / H) for 1024 x 256 frames: body height ~0.67 of the frame from
# ~0.025, segment fractions after Drillis & Contini (docs/DESIGN.md). Used as the fallback box prior.
_PRIOR = {
    "skull_top": (0.50, 0.025), "skull_base": (0.50, 0.105), "c7": (0.50, 0.139),
    "t12": (0.50, 0.266), "l5": (0.50, 0.333), "sacrum_tip": (0.50, 0.373),
    "shoulder_l": (0.16, 0.147), "shoulder_r": (0.84, 0.147),
    "elbow_l": (0.13, 0.272), "elbow_r": (0.87, 0.272),
    "hip_l": (0.30, 0.340), "hip_r": (0.70, 0.340),
    "knee_l": (0.38, 0.504), "knee_r": (0.62, 0.504),
    "iliac_l": (0.33, 0.306), "iliac_r": (0.67, 0.306),
}
#: (K, 2) prior keypoints in normalised image coordinates (x / W, y / H).
DEFAULT_KEYPOINT_PRIOR = torch.tensor([_PRIOR[k] for k in KEYPOINTS])


def cxcywh_to_boxes(c: torch.Tensor) -> torch.Tensor:
    """(..., 4) centre x, centre y, width, height -> (..., 4, 2) corners tl, tr, br, bl."""
    cx, cy, w, h = c.unbind(-1)
    x1, x2, y1, y2 = cx - w / 2, cx + w / 2, cy - h / 2, cy + h / 2
    return torch.stack([torch.stack([x1, y1], -1), torch.stack([x2, y1], -1),
                        torch.stack([x2, y2], -1), torch.stack([x1, y2], -1)], -2)


def boxes_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4, 2) axis-aligned corners -> (..., 4) centre x, centre y, width, height."""
    tl, br = boxes[..., 0, :], boxes[..., 2, :]
    return torch.cat([(tl + br) / 2, br - tl], -1)


def _soft_extent(v: torch.Tensor, logw: torch.Tensor, tau: float, sign: float) -> torch.Tensor:
    """Weighted log-sum-exp max (sign=1) or min (sign=-1) over the last axis; tau in pixels."""
    return sign * tau * torch.logsumexp(sign * v / tau + logw, -1)


def _extents(kp: torch.Tensor, w: torch.Tensor, tau: float, valid: torch.Tensor) -> torch.Tensor:
    """Soft extents of keypoints (..., n, 2) with weights (..., n) -> cx, cy, w, h (..., 4).

    ``valid`` (..., n) marks the real entries of a padded set (padding does not count at all).
    """
    wn = w / w.sum(-1, keepdim=True).clamp_min(1e-6)
    logw = torch.where(w > 0, wn.clamp_min(1e-6).log(), torch.full_like(w, -1e4))  # finite mask
    logw = logw.masked_fill(~valid, float("-inf"))[..., None, :]  # (..., 1, n)
    v = kp.transpose(-1, -2)  # (..., 2, n): x row, y row
    lo, hi = _soft_extent(v, logw, tau, -1.0), _soft_extent(v, logw, tau, 1.0)  # (..., 2)
    return torch.cat([(lo + hi) / 2, (hi - lo).clamp_min(0)], -1)


def region_tables(patches=DEFAULT_PATCHES, margin: float = 0.15, prior: torch.Tensor | None = None) -> dict:
    """The constant per-region tables of the box rule (CPU tensors), R regions of up to n keypoints.

    ``ids`` (R, n) keypoint ids padded with the region's first id, ``valid`` (R, n) bool,
    ``full`` (R,) keypoint weight that means full trust (min(2, n_r)), ``margins`` (R, 4) left,
    top, right, bottom, ``prior`` (K, 2) normalised prior keypoints.
    """
    patches = tuple(patches)
    ids = [p.keypoint_ids if isinstance(p, RegionPatch) else [int(i) for i in p] for p in patches]
    n = max(len(i) for i in ids)
    prior = DEFAULT_KEYPOINT_PRIOR if prior is None else torch.as_tensor(prior, dtype=torch.float32)
    return {"ids": torch.tensor([i + [i[0]] * (n - len(i)) for i in ids]),
            "valid": torch.tensor([[True] * len(i) + [False] * (n - len(i)) for i in ids]),
            "full": torch.tensor([float(min(2, len(i))) for i in ids]),
            "margins": torch.tensor([p.margins(margin) if isinstance(p, RegionPatch) else (float(margin),) * 4
                                     for p in patches], dtype=torch.float32),
            "prior": prior.float()}


def boxes_from_tables(keypoints: torch.Tensor, confidence: torch.Tensor | None, tables: dict, patch_size,
                      min_size: float, image_size, min_confidence: float, tau: float = 1.0) -> torch.Tensor:
    """:func:`boxes_from_keypoints` on precomputed :func:`region_tables` (on the keypoints' device):
    every region at once, no Python loop, no tensor built from Python values."""
    b, k = keypoints.shape[:2]
    if keypoints.ndim != 3 or keypoints.shape[-1] != 2 or k != NUM_KEYPOINTS:
        raise ValueError(f"keypoints must be (B, {NUM_KEYPOINTS}, 2), got {tuple(keypoints.shape)}")
    conf = torch.ones_like(keypoints[..., 0]) if confidence is None else confidence.to(keypoints)
    kp = torch.nan_to_num(keypoints)  # absent keypoints may carry garbage coordinates
    w = conf.clamp(0, 1) * (conf >= min_confidence)  # (B, K) soft weights, hard-gated
    ids, valid = tables["ids"], tables["valid"]  # (R, n)
    wr = w[:, ids] * valid  # (B, R, n)
    box = _extents(kp[:, ids], wr, tau, valid)  # (B, R, 4) cx, cy, w, h
    prior = tables["prior"].to(kp)
    prior_px = torch.stack([prior[:, 0] * float(image_size[1]), prior[:, 1] * float(image_size[0])], -1)
    pbox = _extents(prior_px[ids], valid.to(kp), 1e-3, valid)  # (R, 4)
    # trust the keypoints in proportion to their total weight (two confident ones = full)
    alpha = (wr.sum(-1, keepdim=True) / tables["full"].to(kp)[:, None]).clamp(0, 1)  # (B, R, 1)
    c = alpha * box + (1 - alpha) * pbox  # (B, R, 4): cx, cy, w, h
    m = tables["margins"].to(kp)  # (R, 4) per-side margins left, top, right, bottom
    cx = c[..., 0] + (m[:, 2] - m[:, 0]) * c[..., 2] / 2
    cy = c[..., 1] + (m[:, 3] - m[:, 1]) * c[..., 3] / 2
    ph, pw = float(patch_size[0]), float(patch_size[1])
    bw, bh = c[..., 2] * (1 + m[:, 0] + m[:, 2]), c[..., 3] * (1 + m[:, 1] + m[:, 3])
    bw, bh = torch.maximum(bw, bh * pw / ph), torch.maximum(bh, bw * ph / pw)  # patch aspect
    short = min(ph, pw)  # min side, keeping the aspect (both sides clamp together)
    bw, bh = bw.clamp_min(min_size * pw / short), bh.clamp_min(min_size * ph / short)
    return cxcywh_to_boxes(torch.stack([cx, cy, bw, bh], -1))  # (B, R, 4, 2)


def boxes_from_keypoints(keypoints: torch.Tensor, confidence: torch.Tensor | None = None,
                         patches=DEFAULT_PATCHES, patch_size=(192, 192), margin: float = 0.15,
                         min_size: float = 16.0, prior: torch.Tensor | None = None,
                         image_size=(1024, 256), min_confidence: float = 0.3,
                         tau: float = 1.0) -> torch.Tensor:
    """Boxes (B, R, 4, 2) of the region ``patches`` from keypoints (B, K, 2) in pixels.

    Args:
        keypoints: (B, K, 2) x, y in input-image pixels (may lie outside the image).
        confidence: (B, K) visibility or confidence in [0, 1]; None = all visible. Keypoints under
            ``min_confidence`` are ignored; the others weigh in softly (log-sum-exp extents with
            temperature ``tau`` px, so gradients are defined everywhere).
        patches: RegionPatch sequence (R of them).
        patch_size: (h, w) of the crops; boxes are grown to this aspect ratio.
        margin: relative margin added on each side (of the keypoint extent); a RegionPatch's own
            ``margin`` sides override it.
        min_size: the smallest box side in pixels.
        prior: (K, 2) fallback keypoints in normalised image coordinates (x / W, y / H);
            default :data:`DEFAULT_KEYPOINT_PRIOR`. A region with fewer than two confident
            keypoints (one for one-keypoint regions) blends towards the prior's box.
        image_size: (H, W) of the image, to scale the prior.

    Builds the region tables on every call; a model holds them once in :class:`RegionBoxes`.
    """
    tables = {k: v.to(keypoints.device) for k, v in region_tables(patches, margin, prior).items()}
    return boxes_from_tables(keypoints, confidence, tables, patch_size, min_size, image_size, min_confidence, tau)


class RegionBoxes(nn.Module):
    """The box rule of :func:`boxes_from_keypoints` with its region tables as (non-persistent)
    buffers: ``forward(keypoints (B, K, 2), confidence (B, K) or None, image_size) -> (B, R, 4, 2)``.

    >>> rule = RegionBoxes(DEFAULT_PATCHES, (192, 192))
    >>> rule(DEFAULT_KEYPOINT_PRIOR[None] * torch.tensor([256., 1024.]), None, (1024, 256)).shape
    torch.Size([1, 7, 4, 2])
    """

    def __init__(self, patches=DEFAULT_PATCHES, patch_size=(192, 192), margin: float = 0.15,
                 min_size: float = 16.0, min_confidence: float = 0.3, prior: torch.Tensor | None = None,
                 tau: float = 1.0):
        super().__init__()
        self.patches, self.prior_spec = tuple(patches), prior
        self.patch_size = (int(patch_size[0]), int(patch_size[1]))
        self.min_size, self.min_confidence, self.tau = float(min_size), float(min_confidence), float(tau)
        self.set_margin(margin)

    def set_margin(self, margin: float) -> None:
        """(Re)build the tables for a new global ``margin`` (per-patch margins stay)."""
        self.margin = float(margin)
        for name, t in region_tables(self.patches, self.margin, self.prior_spec).items():
            old = getattr(self, name, None)
            self.register_buffer(name, t if old is None else t.to(old.device), persistent=False)

    def tables(self) -> dict:
        return {"ids": self.ids, "valid": self.valid, "full": self.full, "margins": self.margins, "prior": self.prior}

    def forward(self, keypoints: torch.Tensor, confidence: torch.Tensor | None, image_size) -> torch.Tensor:
        return boxes_from_tables(keypoints, confidence, self.tables(), self.patch_size, self.min_size,
                                 image_size, self.min_confidence, self.tau)

    def extra_repr(self) -> str:
        return (f"regions={len(self.patches)}, patch_size={self.patch_size}, margin={self.margin}, "
                f"min_size={self.min_size}, min_confidence={self.min_confidence}")


def jitter_boxes(boxes: torch.Tensor, position: float = 0.05, scale: float = 0.1,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Random shift (uniform, +/- ``position`` of the box size) and zoom (+/- ``scale``) per box.

    For teacher-forced training, so the segmenter sees boxes like the keypoint net's. Aspect ratio
    is kept. (..., 4, 2) -> (..., 4, 2).
    """
    c = boxes_to_cxcywh(boxes)  # (..., 4)
    u = torch.rand(c.shape[:-1] + (3,), generator=generator, device=c.device, dtype=c.dtype) * 2 - 1
    size = c[..., 2:] * (1 + scale * u[..., 2:])
    centre = c[..., :2] + position * u[..., :2] * c[..., 2:]
    return cxcywh_to_boxes(torch.cat([centre, size], -1))
