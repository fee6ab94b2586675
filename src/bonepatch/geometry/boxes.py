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


def _extents(kp: torch.Tensor, w: torch.Tensor, tau: float) -> torch.Tensor:
    """Soft extents of keypoints (..., n, 2) with weights (..., n) -> cx, cy, w, h (..., 4)."""
    wn = w / w.sum(-1, keepdim=True).clamp_min(1e-6)
    logw = torch.where(w > 0, wn.clamp_min(1e-6).log(), torch.full_like(w, -1e4))  # finite mask
    lo = torch.stack([_soft_extent(kp[..., a], logw, tau, -1.0) for a in (0, 1)], -1)
    hi = torch.stack([_soft_extent(kp[..., a], logw, tau, 1.0) for a in (0, 1)], -1)
    return torch.cat([(lo + hi) / 2, (hi - lo).clamp_min(0)], -1)


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
    """
    b, k = keypoints.shape[:2]
    if keypoints.ndim != 3 or keypoints.shape[-1] != 2 or k != NUM_KEYPOINTS:
        raise ValueError(f"keypoints must be (B, {NUM_KEYPOINTS}, 2), got {tuple(keypoints.shape)}")
    patches = tuple(patches)
    conf = torch.ones_like(keypoints[..., 0]) if confidence is None else confidence.to(keypoints)
    kp = torch.nan_to_num(keypoints)  # absent keypoints may carry garbage coordinates
    w = conf.clamp(0, 1) * (conf >= min_confidence)  # (B, K) soft weights, hard-gated
    prior = DEFAULT_KEYPOINT_PRIOR if prior is None else torch.as_tensor(prior)
    prior_px = prior.to(kp) * torch.tensor([image_size[1], image_size[0]], dtype=kp.dtype, device=kp.device)
    boxes = []
    for p in patches:
        ids = p.keypoint_ids if isinstance(p, RegionPatch) else list(p)
        kpr, wr = kp[:, ids], w[:, ids]  # (B, n, 2), (B, n)
        box = _extents(kpr, wr, tau)  # (B, 4) cx, cy, w, h
        pbox = _extents(prior_px[ids][None], torch.ones(1, len(ids)).to(kp), 1e-3)  # (1, 4)
        # trust the keypoints in proportion to their total weight (two confident ones = full)
        alpha = (wr.sum(-1, keepdim=True) / min(2, len(ids))).clamp(0, 1)
        boxes.append(alpha * box + (1 - alpha) * pbox)
    c = torch.stack(boxes, 1)  # (B, R, 4): cx, cy, w, h
    # per-side margins (R, 4) left, top, right, bottom: a patch's own, else the global one
    m = torch.tensor([p.margins(margin) if isinstance(p, RegionPatch) else (margin,) * 4 for p in patches]).to(c)
    cx = c[..., 0] + (m[:, 2] - m[:, 0]) * c[..., 2] / 2
    cy = c[..., 1] + (m[:, 3] - m[:, 1]) * c[..., 3] / 2
    ph, pw = float(patch_size[0]), float(patch_size[1])
    bw, bh = c[..., 2] * (1 + m[:, 0] + m[:, 2]), c[..., 3] * (1 + m[:, 1] + m[:, 3])
    bw, bh = torch.maximum(bw, bh * pw / ph), torch.maximum(bh, bw * ph / pw)  # patch aspect
    short = min(ph, pw)  # min side, keeping the aspect (both sides clamp together)
    bw, bh = bw.clamp_min(min_size * pw / short), bh.clamp_min(min_size * ph / short)
    return cxcywh_to_boxes(torch.stack([cx, cy, bw, bh], -1))  # (B, R, 4, 2)


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
