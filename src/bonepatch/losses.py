"""Losses: Dice + cross-entropy for segmentation (smp's Dice), small modules with explicit weights.

The keypoint losses (heatmap MSE, SimCC KL) live with their heads in ``models/keypoint_net.py``
and are reached through ``model.keypoint_loss``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from segmentation_models_pytorch.losses import DiceLoss
from torch import nn


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, dice: DiceLoss,
                      dice_weight: float = 1.0, ce_weight: float = 1.0) -> torch.Tensor:
    """Weighted Dice + cross-entropy.

    Args:
        logits: (N, C, H, W) class scores (logits or log-probabilities: both are normalised
            by the softmax inside, so a pasted log-probability map works as is).
        target: (N, H, W) int64 class ids.
    """
    loss = logits.new_zeros(())
    if ce_weight:
        loss = loss + ce_weight * F.cross_entropy(logits, target)
    if dice_weight:
        loss = loss + dice_weight * dice(logits, target)
    return loss


class SegmentationLoss(nn.Module):
    """Thin module around :func:`segmentation_loss`.

    >>> loss = SegmentationLoss()
    >>> loss(torch.zeros(2, 13, 8, 8), torch.zeros(2, 8, 8, dtype=torch.long)).shape
    torch.Size([])
    """

    def __init__(self, dice_weight: float = 1.0, ce_weight: float = 1.0):
        super().__init__()
        self.dice_weight, self.ce_weight = float(dice_weight), float(ce_weight)
        self.dice = DiceLoss(mode="multiclass", from_logits=True)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return segmentation_loss(logits, target, self.dice, self.dice_weight, self.ce_weight)
