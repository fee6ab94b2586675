"""Batch augmentation on any device (kornia): one random geometry for image, mask and keypoints.

A horizontal flip (p=0.5) and a small random affine (rotation, scale, translation) are drawn
once per sample and applied to the image (bilinear), the mask (nearest) and the keypoints; a
mirrored sample gets its _l/_r keypoint pairs swapped (``anatomy.FLIP_INDEX``) so the names keep
meaning image sides. Counts are then scaled by a random factor per sample. Keypoints that leave
the image get vis 0. Deterministic under ``torch.manual_seed``.
"""
from __future__ import annotations

import kornia.augmentation as K
import torch
from torch import nn

from bonepatch.anatomy import swap_sides


def _geometry(rotation: float, scale: tuple[float, float], translate: tuple[float, float], flip_p: float):
    return K.AugmentationSequential(
        K.RandomHorizontalFlip(p=flip_p),
        K.RandomAffine(degrees=rotation, translate=tuple(translate), scale=tuple(scale), p=1.0),
        data_keys=["input", "mask", "keypoints"])


def augment_batch(batch: dict, rotation: float = 5.0, scale: tuple[float, float] = (0.9, 1.1),
                  translate: tuple[float, float] = (0.03, 0.03), flip_p: float = 0.5,
                  intensity: tuple[float, float] = (0.7, 1.3)) -> dict:
    """A randomly augmented copy of a collated batch.

    Args:
        batch: image (B,1,H,W) counts, keypoints (B,K,3) x, y, vis, optional mask (B,H,W) int64,
            meta (passed through).
        rotation: max degrees; scale: (min, max) zoom; translate: max shift as a fraction of
            (W, H); flip_p: horizontal flip probability; intensity: (min, max) count factor.

    Returns:
        A new dict with the same keys and shapes; mask int64 with the input's ids.

    >>> b = {"image": torch.rand(2, 1, 64, 32), "keypoints": torch.zeros(2, 16, 3),
    ...      "mask": torch.zeros(2, 64, 32, dtype=torch.long)}
    >>> {k: tuple(v.shape) for k, v in augment_batch(b).items()}
    {'image': (2, 1, 64, 32), 'keypoints': (2, 16, 3), 'mask': (2, 64, 32)}
    """
    image, kp = batch["image"], batch["keypoints"]
    if image.ndim != 4 or image.shape[1] != 1 or kp.ndim != 3 or kp.shape[-1] != 3:
        raise ValueError(f"augment_batch wants image (B,1,H,W) and keypoints (B,K,3), got "
                         f"{tuple(image.shape)} and {tuple(kp.shape)}")
    b, _, h, w = image.shape
    geom = _geometry(rotation, scale, translate, flip_p)
    mask = batch["mask"][:, None].float() if "mask" in batch else torch.zeros_like(image)  # (B,1,H,W)
    image_t, mask_t, xy = geom(image, mask, kp[..., :2].contiguous())
    mirrored = torch.linalg.det(geom.transform_matrix[:, :2, :2].to(image.device)) < 0  # (B,)
    inside = (xy[..., 0] >= 0) & (xy[..., 0] <= w - 1) & (xy[..., 1] >= 0) & (xy[..., 1] <= h - 1)
    kp_t = torch.cat([xy, kp[..., 2:] * inside[..., None]], -1)  # (B,K,3); vis 0 once outside
    kp_t = torch.where(mirrored[:, None, None], swap_sides(kp_t), kp_t)  # names follow image sides
    factor = torch.empty(b, 1, 1, 1, device=image.device).uniform_(*intensity)  # (B,1,1,1)
    out = dict(batch, image=image_t * factor, keypoints=kp_t)
    if "mask" in batch:
        out["mask"] = mask_t[:, 0].round().long()  # nearest resampling keeps the ids
    return out


class BatchAugment(nn.Module):
    """``augment_batch`` as a module (the LightningModule's ``augment``, applied to training batches)."""

    def __init__(self, rotation: float = 5.0, scale=(0.9, 1.1), translate=(0.03, 0.03),
                 flip_p: float = 0.5, intensity=(0.7, 1.3)):
        super().__init__()
        self.kwargs = dict(rotation=rotation, scale=tuple(scale), translate=tuple(translate),
                           flip_p=flip_p, intensity=tuple(intensity))

    def forward(self, batch: dict) -> dict:
        return augment_batch(batch, **self.kwargs)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.kwargs.items())
