"""Crop region patches out of an image and paste patch predictions back (differentiable).

Convention: boxes (B, R, 4, 2) are kornia corners (tl, tr, br, bl) in pixels (x, y). A crop of
size (h, w) samples the box corner to corner (``align_corners=True``): patch pixel (i, j) sits at
``x = x1 + j (x2 - x1) / (w - 1)``, ``y = y1 + i (y2 - y1) / (h - 1)``. Paste is the exact inverse
warp, evaluated only inside each box's own window of the canvas (cost ~ R x C x box area, not
R x C x H x W). Patches are stacked region-major per image: row ``b * R + r`` is region r of image b.

>>> img = torch.rand(2, 1, 64, 32)
>>> boxes = torch.tensor([[0., 0.], [15., 0.], [15., 31.], [0., 31.]]).expand(2, 3, 4, 2)
>>> crops = crop_patches(img, boxes, (32, 16)); crops.shape                    # (B*R, C, h, w)
torch.Size([6, 1, 32, 16])
>>> paste_patches(crops, boxes, (64, 32)).shape                               # (B, C, H, W)
torch.Size([2, 1, 64, 32])
"""
from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from bonepatch import value_checks
from bonepatch.geometry.paste_separable import paste_separable, taper_1d


def _check_boxes(boxes: torch.Tensor, batch: int | None = None, min_side: float = 2.0):
    """Boxes must be (B, R, 4, 2); their values (finite, sides >= ``min_side`` px) are checked
    where :mod:`bonepatch.value_checks` allows (eager CPU: a host-device sync elsewhere)."""
    if boxes.ndim != 4 or boxes.shape[-2:] != (4, 2) or (batch is not None and boxes.shape[0] != batch):
        raise ValueError(f"boxes must be (B={batch}, R, 4, 2) corners tl, tr, br, bl; got {tuple(boxes.shape)}")
    if not value_checks.enabled(boxes):
        return
    if not torch.isfinite(boxes).all():
        raise ValueError("boxes contain NaN or inf; check the keypoints they come from")
    side = torch.minimum(boxes[..., 2, 0] - boxes[..., 0, 0], boxes[..., 2, 1] - boxes[..., 0, 1])
    if (side < min_side).any():
        raise ValueError(f"box sides must be >= {min_side} px (got {side.min().item():.3g}); "
                         "raise min_size in boxes_from_keypoints")


def crop_grid(boxes: torch.Tensor, size, image_size) -> torch.Tensor:
    """``F.grid_sample`` grid (B, R*h, w, 2) sampling each box (B, R, 4, 2) corner to corner.

    Patch pixel (i, j) of box r sits at ``tl + j (tr - tl) / (w - 1) + i (bl - tl) / (h - 1)``
    (exact for the axis-aligned boxes of this package, and any parallelogram), normalised with
    the ``align_corners=True`` rule of an image of ``image_size`` (H, W).
    """
    b, r = boxes.shape[:2]
    h, w = int(size[0]), int(size[1])
    big_h, big_w = int(image_size[0]), int(image_size[1])
    tl, tr, bl = boxes[:, :, 0], boxes[:, :, 1], boxes[:, :, 3]  # (B, R, 2) each
    # sample fractions 0..1 along each patch axis (a 1-sample axis sits at the top-left corner)
    fj = torch.linspace(0, 1, w, device=boxes.device, dtype=boxes.dtype) if w > 1 else boxes.new_zeros(1)
    fi = torch.linspace(0, 1, h, device=boxes.device, dtype=boxes.dtype) if h > 1 else boxes.new_zeros(1)
    pts = (tl[:, :, None, None] + fj[:, None] * (tr - tl)[:, :, None, None]
           + fi[:, None, None] * (bl - tl)[:, :, None, None])  # (B, R, h, w, 2) pixels x, y
    scale = 2.0 / max(big_w - 1, 1), 2.0 / max(big_h - 1, 1)
    grid = torch.stack([pts[..., 0] * scale[0] - 1, pts[..., 1] * scale[1] - 1], -1)
    return grid.reshape(b, r * h, w, 2)


def crop_patches(image: torch.Tensor, boxes: torch.Tensor, size, mode: str = "bilinear") -> torch.Tensor:
    """Crop and resize every box: image (B, C, H, W), boxes (B, R, 4, 2) -> (B*R, C, h, w).

    Outside the image the crop is zero. Differentiable w.r.t. the image and the boxes. One
    ``grid_sample`` per batch on the image itself (no copy of the image per region, no
    per-box linear solve, static shapes: ``torch.compile``-able); the same samples as kornia's
    ``crop_and_resize(..., align_corners=True)`` for the axis-aligned boxes used here.
    """
    if image.ndim != 4:
        raise ValueError(f"image must be (B, C, H, W), got {tuple(image.shape)}")
    _check_boxes(boxes, image.shape[0])
    b, r = boxes.shape[:2]
    h, w = int(size[0]), int(size[1])
    grid = crop_grid(boxes, (h, w), image.shape[-2:]).to(image.dtype)
    out = F.grid_sample(image, grid, mode=mode, padding_mode="zeros", align_corners=True)  # (B, C, R*h, w)
    # (B, C, R*h, w) -> (B*R, C, h, w): region-major per image
    return out.view(b, image.shape[1], r, h, w).transpose(1, 2).reshape(b * r, image.shape[1], h, w)


def crop_labels(mask: torch.Tensor, boxes: torch.Tensor, size) -> torch.Tensor:
    """Nearest-neighbour crops of a label map (B, H, W) int -> (B*R, h, w) int64 (0 outside)."""
    if mask.ndim != 3:
        raise ValueError(f"mask must be (B, H, W) label ids, got {tuple(mask.shape)}")
    crops = crop_patches(mask[:, None].float(), boxes.detach().to(torch.float32), size, mode="nearest")
    return crops[:, 0].round().long()  # (B*R, 1, h, w) -> (B*R, h, w)


def taper(g: torch.Tensor, flat: float = 0.5, floor: float = 0.05) -> torch.Tensor:
    """Separable blend weight at normalised patch coordinates g in [-1, 1] (..., 2).

    A flat-top (Tukey) window: 1 on the central ``flat`` fraction of each axis, a raised cosine
    down to ``floor`` at the box edge, 0 outside the box.
    """
    w = taper_1d(g, flat, floor)  # both axes in one pass (elementwise)
    return w[..., 0] * w[..., 1]


def _window_grid(x1, y1, bw, bh, ox, oy, wh: int, ww: int, big_h: int, big_w: int, flat: float):
    """Sampling grid (n, wh, ww, 2) in normalised patch coords and blend window (n, 1, wh, ww)."""
    xs = ox[:, None] + torch.arange(ww, device=x1.device)  # (n, ww) canvas columns
    ys = oy[:, None] + torch.arange(wh, device=x1.device)  # (n, wh) canvas rows
    gx = 2 * (xs.to(x1.dtype) - x1[:, None]) / bw[:, None] - 1  # inverse of the crop warp
    gy = 2 * (ys.to(x1.dtype) - y1[:, None]) / bh[:, None] - 1
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), -1)
    inside = (xs < big_w)[:, None, :] & (ys < big_h)[:, :, None]  # window pixels on the canvas
    return grid, (taper(grid, flat) * inside)[:, None], xs, ys


def _paste_scatter(patches, a, b, r, x1, y1, bw, bh, ox, oy, whs, wws, big_h, big_w, flat, buckets=4):
    """Vectorised paste: windows sorted by area into ``buckets`` groups, each padded to its largest
    window, scattered with one ``scatter_add`` per group into a padded canvas (B, ch, H+wh, W+ww)."""
    n, c = patches.shape[:2]
    wh_max, ww_max = int(whs.max()), int(wws.max())
    hp, wp = big_h + wh_max, big_w + ww_max  # padding absorbs windows running off the canvas
    num_c = patches.new_zeros(c, b * hp * wp)  # (ch, B*Hp*Wp): every image's canvas in a row
    den_c = patches.new_zeros(a.shape[1], b * hp * wp)
    order = torch.argsort(whs * wws)
    for sel in order.chunk(min(buckets, n)):
        wh, ww = int(whs[sel].max()), int(wws[sel].max())
        grid, t, xs, ys = _window_grid(x1[sel], y1[sel], bw[sel], bh[sel], ox[sel], oy[sel], wh, ww,
                                       big_h, big_w, flat)
        vals = F.grid_sample(patches[sel], grid, mode="bilinear", align_corners=True)  # (k, C, wh, ww)
        den = t * a[sel][:, :, None, None]  # (k, 1 or C, wh, ww)
        img = torch.div(sel, r, rounding_mode="floor")  # patch b*R + r lies on image b
        idx = (img[:, None, None] * (hp * wp) + ys[:, :, None] * wp + xs[:, None, :]).flatten()  # (k*wh*ww,)
        for canvas, v in ((num_c, vals * den), (den_c, den)):
            # (k, ch, wh, ww) -> (ch, k*wh*ww): channel-major rows matching the canvas
            canvas.scatter_add_(1, idx[None].expand(v.shape[1], -1), v.transpose(0, 1).reshape(v.shape[1], -1))
    # (ch, B*Hp*Wp) -> (B, ch, H, W)
    def unflat(x):
        return x.view(x.shape[0], b, hp, wp).transpose(0, 1)[:, :, :big_h, :big_w]
    return unflat(num_c), unflat(den_c)


def paste_patches(patches: torch.Tensor, boxes: torch.Tensor, image_size, weights: torch.Tensor | None = None,
                  flat: float = 0.5, eps: float = 1e-8, return_coverage: bool = False,
                  method: str = "auto"):
    """Paste patches (B*R, C, h, w) back into their boxes (B, R, 4, 2) on a canvas (B, C, H, W).

    Each canvas pixel gets the blend ``sum_r v_r a_r t_r / (sum_r a_r t_r + eps)`` over the patches
    covering it, where ``v_r`` is the patch value warped back (bilinear), ``t_r`` the smooth window
    of :func:`taper` and ``a_r`` the optional per-patch, per-channel ``weights`` (B*R, C) (e.g. 0
    for a class the patch may not predict: it then abstains for that class instead of voting 0).
    Pixels no patch covers are 0. With ``return_coverage`` also returns the denominator
    ``sum_r a_r t_r`` (B, C or 1, H, W).

    ``method``: ``"loop"`` (one slice-add into each box's own window of the canvas, each its own
    window size: fastest on CPU), ``"scatter"`` (windows bucketed by size, each bucket padded to
    its largest, one ``scatter_add`` per bucket), ``"separable"`` (two matrix products over the
    whole canvas, static shapes: no host-device sync, ``torch.compile``-able; see
    :mod:`bonepatch.geometry.paste_separable`) or ``"auto"`` (loop in eager mode on CPU,
    separable on accelerators and while compiling). loop and scatter read the window sizes on the
    host (``.tolist()`` / ``int()``).
    """
    methods = ("auto", "loop", "scatter", "separable")
    if method not in methods:
        raise KeyError(f"unknown paste method {method!r}; choose one of {methods}")
    big_h, big_w = int(image_size[0]), int(image_size[1])
    b, r = boxes.shape[:2]
    n, c, h, w = patches.shape
    if n != b * r:
        raise ValueError(f"patches must be (B*R={b * r}, C, h, w) for boxes {tuple(boxes.shape)}, got {tuple(patches.shape)}")
    _check_boxes(boxes)
    if weights is not None and weights.shape != (n, c):
        raise ValueError(f"weights must be (B*R, C) = ({n}, {c}), got {tuple(weights.shape)}")
    if method == "auto":
        method = "loop" if patches.device.type == "cpu" and not torch.compiler.is_compiling() else "separable"
    if method == "separable":
        a = patches.new_ones(n, 1) if weights is None else weights
        num_c, den_c = paste_separable(patches, boxes, (big_h, big_w), a, flat)
        return _blend(num_c.to(patches.dtype), den_c.to(patches.dtype), eps, return_coverage)
    flat_boxes = boxes.reshape(n, 4, 2).to(patches.dtype)  # (B, R, 4, 2) -> (B*R, 4, 2)
    x1, y1 = flat_boxes[:, 0, 0], flat_boxes[:, 0, 1]
    bw, bh = flat_boxes[:, 2, 0] - x1, flat_boxes[:, 2, 1] - y1
    with torch.no_grad():  # integer window of each box (pixels whose centre is inside), clipped
        ox = x1.ceil().clamp(0, big_w - 1).long()
        oy = y1.ceil().clamp(0, big_h - 1).long()
        wws = ((x1 + bw).floor().clamp(-1, big_w - 1).long() - ox + 1).clamp_min(1)
        whs = ((y1 + bh).floor().clamp(-1, big_h - 1).long() - oy + 1).clamp_min(1)
    a = torch.ones(n, 1, device=patches.device, dtype=patches.dtype) if weights is None else weights.to(patches)
    ch_den = a.shape[1]
    if method == "loop":
        num_c = patches.new_zeros(b, c, big_h, big_w)
        den_c = patches.new_zeros(b, ch_den, big_h, big_w)
        # per patch, only the channels it has a non-zero weight for (e.g. its allowed classes)
        active = [None] * n if weights is None else [torch.nonzero(row).flatten() for row in a.detach() != 0]
        for i, (x0, y0, ww, wh) in enumerate(zip(ox.tolist(), oy.tolist(), wws.tolist(), whs.tolist())):
            sl, ch = slice(i, i + 1), active[i]
            if ch is not None and len(ch) == 0:
                continue
            grid, t, _, _ = _window_grid(x1[sl], y1[sl], bw[sl], bh[sl], ox[sl], oy[sl], wh, ww,
                                         big_h, big_w, flat)
            src = patches[sl] if ch is None else patches[sl, ch]  # (1, C or k, h, w)
            vals = F.grid_sample(src, grid, mode="bilinear", align_corners=True)  # (1, C or k, wh, ww)
            den = (t * (a[sl] if ch is None else a[sl, ch])[:, :, None, None])[0]  # (1 or k, wh, ww)
            # patch i = b * R + r lies on image i // R; add into its window of the canvas
            num_win = num_c[i // r, :, y0:y0 + wh, x0:x0 + ww]
            den_win = den_c[i // r, :, y0:y0 + wh, x0:x0 + ww]
            if ch is None:
                num_win += vals[0] * den
                den_win += den
            else:
                num_win.index_add_(0, ch, vals[0] * den)
                den_win.index_add_(0, ch, den)
    else:
        num_c, den_c = _paste_scatter(patches, a, b, r, x1, y1, bw, bh, ox, oy, whs, wws, big_h, big_w, flat)
    return _blend(num_c, den_c, eps, return_coverage)


def _blend(num_c: torch.Tensor, den_c: torch.Tensor, eps: float, return_coverage: bool):
    """num / (den + eps), in place at inference; (blend, den) with ``return_coverage``."""
    if num_c.requires_grad or return_coverage:
        out = num_c / (den_c + eps)
    else:  # inference: in place, no extra canvas
        out = num_c.div_(den_c.add_(eps))
    return (out, den_c) if return_coverage else out


class CropPatches(nn.Module):
    """Module form of :func:`crop_patches` with ``detach_boxes`` (stop gradients at the boxes)."""

    def __init__(self, size=(192, 192), detach_boxes: bool = False):
        super().__init__()
        self.size, self.detach_boxes = tuple(int(s) for s in size), bool(detach_boxes)

    def forward(self, image, boxes):
        return crop_patches(image, boxes.detach() if self.detach_boxes else boxes, self.size)


class PastePatches(nn.Module):
    """Module form of :func:`paste_patches`."""

    def __init__(self, flat: float = 0.5, detach_boxes: bool = False):
        super().__init__()
        self.flat, self.detach_boxes = float(flat), bool(detach_boxes)

    def forward(self, patches, boxes, image_size, weights=None, return_coverage=False):
        boxes = boxes.detach() if self.detach_boxes else boxes
        return paste_patches(patches, boxes, image_size, weights, self.flat, return_coverage=return_coverage)


class CropPaste(nn.Module):
    """Crop and paste as one module; ``detach_boxes`` stops gradients at the boxes for both."""

    def __init__(self, size=(192, 192), flat: float = 0.5, detach_boxes: bool = False):
        super().__init__()
        self.crop = CropPatches(size, detach_boxes)
        self.paste = PastePatches(flat, detach_boxes)

    @property
    def detach_boxes(self) -> bool:
        return self.crop.detach_boxes

    @detach_boxes.setter
    def detach_boxes(self, value: bool):
        self.crop.detach_boxes = self.paste.detach_boxes = bool(value)

    def forward(self, image, boxes):
        """Round trip (for checks): crop ``image`` and paste the crops back (B, C, H, W)."""
        return self.paste(self.crop(image, boxes), boxes, image.shape[-2:])


def blend_probabilities(patch_logits: torch.Tensor, boxes: torch.Tensor, image_size, allowed: torch.Tensor | None,
                        flat: float = 0.5) -> torch.Tensor:
    """Paste patch softmaxes (B*R, C, h, w) into (B, C, H, W) log-probabilities.

    Each bone class is the window-weighted mean over the patches ALLOWED that class (``allowed``
    (B*R, C) bool; None = all): a patch abstains for classes it may not predict instead of voting
    background against a neighbour that may. Background is the complement ``relu(1 - sum fg)``,
    then everything is renormalised; pixels no patch covers are background.
    """
    probs = patch_logits.float().softmax(1)
    weights = None if allowed is None else allowed.to(probs)
    fg = paste_patches(probs[:, 1:], boxes, image_size, None if weights is None else weights[:, 1:], flat)
    return with_background(fg)


def with_background(fg: torch.Tensor) -> torch.Tensor:
    """Bone-class probabilities (B, C-1, H, W) -> log-probabilities (B, C, H, W) with background
    ``relu(1 - sum fg)``, renormalised (in place when no gradient is needed: 4x faster on CPU)."""
    total = fg.sum(1, keepdim=True)
    bg = torch.relu(1 - total) + 1e-6
    norm = total + bg  # = the sum over all C channels
    p = torch.cat([bg, fg], 1)
    if p.requires_grad:
        return (p / norm).clamp_min(1e-8).log()
    return p.div_(norm).clamp_min_(1e-8).log_()
