"""Baselines sharing the PatchSegmenter code with the pipeline, so comparisons are fair.

* :class:`SingleStageSegmenter`: the whole image through one multi-class model.
* :class:`FixedGridPatchSegmenter`: fixed-size overlapping grid patches at native resolution (no
  keypoints), pasted with the same paste op.

>>> m = SingleStageSegmenter({"encoder": "resnet18"})
>>> m(torch.rand(1, 1, 128, 64) * 10).logits.shape
torch.Size([1, 13, 128, 64])
>>> g = FixedGridPatchSegmenter({"encoder": "resnet18"}, patch_size=(64, 64))
>>> out = g(torch.rand(1, 1, 128, 64) * 10); out.logits.shape, out.boxes.shape
(torch.Size([1, 13, 128, 64]), torch.Size([1, 3, 4, 2]))
"""
from __future__ import annotations

import math

import torch
from torch import nn

from bonepatch.geometry.boxes import cxcywh_to_boxes
from bonepatch.geometry.crop_paste import crop_patches, paste_patches, with_background
from bonepatch.models.pipeline import PipelineOutput, build
from bonepatch.models.segmenter import PatchSegmenter
from bonepatch.preprocess import Preprocess
from bonepatch.pretrained import load_pretrained
from bonepatch.value_checks import stage


class SingleStageSegmenter(nn.Module):
    """Whole image -> logits (B, C, H, W) with one PatchSegmenter (no region conditioning)."""

    def __init__(self, segmenter=None, preprocess=None, init_from=None):
        super().__init__()
        self.preprocess = build(preprocess, Preprocess)
        self.segmenter = build(segmenter, PatchSegmenter, num_regions=1, conditioning="none")
        self.pretrained_parameters = load_pretrained(self, init_from)  # fine-tuning (bonepatch.pretrained)

    def forward(self, image: torch.Tensor, keypoints: torch.Tensor | None = None) -> PipelineOutput:
        """``keypoints`` is accepted for a uniform interface and ignored."""
        with stage("preprocess"):
            x = self.preprocess(image)
        with stage("segmenter"):
            return PipelineOutput(self.segmenter(x, None))


def grid_starts(length: int, patch: int, overlap: float) -> list[float]:
    """Top-left coordinates of patches of ``patch`` px tiling an axis of ``length`` px with overlap."""
    if length <= patch:
        return [(length - patch) / 2]  # one patch, centred, zero-padded on both sides
    n = math.ceil((length - patch) / (patch * (1 - overlap))) + 1
    return [round(i * (length - patch) / (n - 1)) for i in range(n)]


class FixedGridPatchSegmenter(nn.Module):
    """Fixed overlapping grid of ``patch_size`` crops at native resolution, one shared segmenter.

    Patches are cropped 1:1 (box side = patch side - 1 between pixel centres) and blended back by
    :func:`paste_patches`. ``patch_region`` holds the grid cell index.
    """

    def __init__(self, segmenter=None, preprocess=None, patch_size=(192, 192), overlap: float = 0.25,
                 blend_flat: float = 0.5, init_from=None):
        super().__init__()
        if not 0 <= overlap < 1:
            raise ValueError(f"overlap must be in [0, 1), got {overlap}")
        self.preprocess = build(preprocess, Preprocess)
        self.segmenter = build(segmenter, PatchSegmenter, num_regions=1, conditioning="none")
        self.patch_size, self.overlap, self.blend_flat = (int(patch_size[0]), int(patch_size[1])), float(overlap), float(blend_flat)
        self._grids: dict = {}  # (H, W, device) -> (R, 4, 2) boxes: built once per image size
        self.pretrained_parameters = load_pretrained(self, init_from)

    def grid_boxes(self, image_size, batch: int, device=None) -> torch.Tensor:
        """(B, R, 4, 2) grid boxes for an image of ``image_size`` (H, W) (cached per size in eager
        mode; constants of the graph under ``torch.compile``)."""
        key = (int(image_size[0]), int(image_size[1]), torch.device(device or "cpu"))
        boxes = None if torch.compiler.is_compiling() else self._grids.get(key)
        if boxes is None:
            ph, pw = self.patch_size
            ys, xs = grid_starts(key[0], ph, self.overlap), grid_starts(key[1], pw, self.overlap)
            c = torch.tensor([[x + (pw - 1) / 2, y + (ph - 1) / 2, pw - 1, ph - 1] for y in ys for x in xs],
                             dtype=torch.float32, device=device)  # (R, 4) cx, cy, w, h
            boxes = cxcywh_to_boxes(c)
            if not torch.compiler.is_compiling():
                self._grids[key] = boxes
        return boxes[None].expand(batch, -1, -1, -1)

    def forward(self, image: torch.Tensor, keypoints: torch.Tensor | None = None) -> PipelineOutput:
        with stage("preprocess"):
            x = self.preprocess(image)
        b, image_size = x.shape[0], tuple(x.shape[-2:])
        with stage("crop"):
            boxes = self.grid_boxes(image_size, b, x.device).to(x.dtype)
            patches = crop_patches(x, boxes, self.patch_size)  # (B*R, 1, h, w)
        with stage("segmenter"):
            patch_logits = self.segmenter(patches, None)  # (B*R, C, h, w)
        with stage("paste"):
            probs = patch_logits.float().softmax(1)
            # every patch votes on every class; background = complement, uncovered pixels background
            logits = with_background(paste_patches(probs[:, 1:], boxes, image_size, flat=self.blend_flat))
        region = torch.arange(boxes.shape[1], device=x.device).repeat(b)  # grid cell ids (B*R,)
        return PipelineOutput(logits, boxes=boxes, patch_logits=patch_logits, patch_region=region)
