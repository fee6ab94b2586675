"""KeypointPatchSegmenter: scan -> keypoints -> region boxes -> patches -> shared segmenter -> paste.

Differentiable end to end (the segmentation loss on the pasted full-image map reaches the keypoint
net through the boxes unless ``detach_boxes``); runs without a Trainer.

>>> from bonepatch.models.keypoint_net import KeypointNet
>>> from bonepatch.models.segmenter import PatchSegmenter
>>> model = KeypointPatchSegmenter(KeypointNet("test_resnet", input_size=(128, 32)),
...                                PatchSegmenter(encoder="resnet18", num_regions=7), patch_size=(64, 64))
>>> out = model(torch.rand(2, 1, 256, 64) * 100)
>>> out.logits.shape, out.boxes.shape, out.patch_logits.shape              # R = 7 regions
(torch.Size([2, 13, 256, 64]), torch.Size([2, 7, 4, 2]), torch.Size([14, 13, 64, 64]))
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bonepatch.anatomy import NUM_CLASSES, as_patches
from bonepatch.geometry.boxes import RegionBoxes, jitter_boxes
from bonepatch.geometry.crop_paste import blend_probabilities, crop_labels, crop_patches
from bonepatch.models.keypoint_net import KeypointNet
from bonepatch.models.segmenter import PatchSegmenter
from bonepatch.preprocess import Preprocess
from bonepatch.pretrained import load_pretrained
from bonepatch.value_checks import stage


@dataclass
class PipelineOutput:
    """What every model returns (docs/CONTRACTS.md)."""

    logits: torch.Tensor  # (B, C, H, W) full-image scores; softmax(1) = probabilities
    keypoints: torch.Tensor | None = None  # (B, K, 2) input-image pixels
    confidence: torch.Tensor | None = None  # (B, K)
    keypoint_raw: object = None  # heatmaps or SimCC logits, for the keypoint loss
    boxes: torch.Tensor | None = None  # (B, R, 4, 2)
    patch_logits: torch.Tensor | None = None  # (B*R, C, h, w)
    patch_region: torch.Tensor | None = None  # (B*R,) region ids


def build(spec, default_cls, **kwargs):
    """A sub-module from a module (as is), a callable (Hydra ``_partial_``), a dict of kwargs or None."""
    if isinstance(spec, nn.Module):
        return spec
    if callable(spec):
        return spec(**kwargs)
    return default_cls(**{**kwargs, **dict(spec or {})})


class KeypointPatchSegmenter(nn.Module):
    """The keypoint -> patch -> segment -> paste model.

    Args:
        keypoint_net: a KeypointNet (module, Hydra partial or kwargs dict).
        segmenter: a PatchSegmenter; a partial / dict is built with ``num_regions`` and
            ``allowed_classes`` from ``patches``; a module gets its allowed classes set.
        preprocess: a Preprocess (None = default normalise + CLAHE).
        patches: region patches (list of ``{name, keypoints, classes}`` dicts or RegionPatch);
            None = anatomy.DEFAULT_PATCHES.
        patch_size: (h, w) of every crop, a multiple of 32 for smp encoders.
        margin, min_size, min_confidence: box rules (geometry.boxes.boxes_from_keypoints).
        detach_boxes: stop gradients at the boxes (staged training).
        box_grad_scale: factor on the gradient that flows from the boxes back into the keypoints
            (forward unchanged). At initialisation the segmentation loss sends ~1000x the keypoint
            loss's gradient into the keypoint net through the boxes and swamps the heatmaps, so
            joint training from scratch scales it down (1.0 = plain joint gradient).
        restrict_classes: suppress classes a region may not predict (in the segmenter and paste).
        jitter_position, jitter_scale: random box jitter while training on given keypoints.
        init_from: weights to start from (``bonepatch.pretrained``; fine-tuning), or None.
    """

    def __init__(self, keypoint_net, segmenter, preprocess=None, patches=None, patch_size=(192, 192),
                 margin: float = 0.15, min_size: float = 32.0, min_confidence: float = 0.3,
                 detach_boxes: bool = False, box_grad_scale: float = 1.0, restrict_classes: bool = True,
                 jitter_position: float = 0.0,
                 jitter_scale: float = 0.0, blend_flat: float = 0.5, init_from=None):
        super().__init__()
        self.patches = as_patches(patches)
        allowed = [p.class_ids for p in self.patches]
        self.preprocess = build(preprocess, Preprocess)
        self.keypoint_net = build(keypoint_net, KeypointNet)
        self.segmenter = build(segmenter, PatchSegmenter, num_regions=len(self.patches), allowed_classes=allowed)
        if self.segmenter.num_regions != len(self.patches):
            raise ValueError(f"segmenter has num_regions={self.segmenter.num_regions} but there are "
                             f"{len(self.patches)} patches; build it with num_regions={len(self.patches)}")
        self.segmenter.set_allowed_classes(allowed)
        self.segmenter.restrict = bool(restrict_classes)
        self.patch_size = (int(patch_size[0]), int(patch_size[1]))
        self.box_rule = RegionBoxes(self.patches, self.patch_size, margin, min_size, min_confidence)
        self.detach_boxes, self.restrict_classes = bool(detach_boxes), bool(restrict_classes)
        self.box_grad_scale = float(box_grad_scale)
        self.jitter_position, self.jitter_scale, self.blend_flat = float(jitter_position), float(jitter_scale), float(blend_flat)
        table = torch.zeros(len(self.patches), NUM_CLASSES, dtype=torch.long)  # region, class -> target id
        for r, ids in enumerate(allowed):
            table[r, ids] = torch.tensor(ids)
        # constant tables as non-persistent buffers (not in checkpoints, moved with the model)
        self.register_buffer("target_table", table, persistent=False)
        self.register_buffer("identity_table", torch.arange(NUM_CLASSES).expand(len(self.patches), -1).clone(),
                             persistent=False)
        self.register_buffer("region_ids", torch.arange(len(self.patches)), persistent=False)
        self.pretrained_parameters = load_pretrained(self, init_from)

    @property
    def num_regions(self) -> int:
        return len(self.patches)

    @property
    def margin(self) -> float:
        return self.box_rule.margin

    @margin.setter
    def margin(self, value: float):
        self.box_rule.set_margin(value)

    @property
    def min_size(self) -> float:
        return self.box_rule.min_size

    @min_size.setter
    def min_size(self, value: float):
        self.box_rule.min_size = float(value)

    @property
    def min_confidence(self) -> float:
        return self.box_rule.min_confidence

    @min_confidence.setter
    def min_confidence(self, value: float):
        self.box_rule.min_confidence = float(value)

    # --- stages -----------------------------------------------------------------------------
    def predict_keypoints(self, x):
        return self.keypoint_net(x)

    def make_boxes(self, keypoints, confidence, image_size):
        boxes = self.box_rule(keypoints, confidence, image_size)
        if self.detach_boxes:
            return boxes.detach()
        s = self.box_grad_scale  # identity forward, gradient x s backward
        return boxes if s == 1.0 else boxes * s + boxes.detach() * (1.0 - s)

    def regions(self, batch: int, device=None) -> torch.Tensor:
        """(B*R,) region ids, region-major per image: row b*R + r is region r."""
        ids = self.region_ids if device is None else self.region_ids.to(device)
        return ids.repeat(batch)

    def segment(self, patches, region):
        return self.segmenter(patches, region)

    def paste(self, patch_logits, boxes, region, image_size):
        allowed = self.segmenter.allowed[region] if self.restrict_classes else None
        return blend_probabilities(patch_logits, boxes, image_size, allowed, self.blend_flat)

    def forward(self, image: torch.Tensor, keypoints: torch.Tensor | None = None) -> PipelineOutput:
        """image (B, 1, H, W) counts; keypoints (B, K, 3) x, y, vis for teacher forcing or None.

        Each stage runs under a ``bonepatch.<stage>`` profiler range (benchmarks/profile_step.py).
        """
        with stage("preprocess"):
            x = self.preprocess(image)
        b, image_size = x.shape[0], tuple(x.shape[-2:])
        with stage("keypoint_net"):
            kp = self.predict_keypoints(x)
        with stage("boxes"):
            if keypoints is None:
                boxes = self.make_boxes(kp.keypoints, kp.confidence, image_size)
            else:
                if keypoints.ndim != 3 or keypoints.shape[0] != b or keypoints.shape[-1] != 3:
                    raise ValueError(f"keypoints must be (B={b}, K, 3) x, y, vis; got {tuple(keypoints.shape)}")
                boxes = self.make_boxes(keypoints[..., :2].to(x), keypoints[..., 2].to(x), image_size)
                if self.training and (self.jitter_position > 0 or self.jitter_scale > 0):
                    boxes = jitter_boxes(boxes, self.jitter_position, self.jitter_scale)
        with stage("crop"):
            patches = crop_patches(x, boxes, self.patch_size)  # (B*R, 1, h, w)
        region = self.regions(b)  # (B*R,)
        with stage("segmenter"):
            patch_logits = self.segment(patches, region)  # (B*R, C, h, w)
        with stage("paste"):
            logits = self.paste(patch_logits, boxes, region, image_size)  # (B, C, H, W)
        return PipelineOutput(logits, kp.keypoints, kp.confidence, kp.raw, boxes, patch_logits, region)

    # --- loss helpers -------------------------------------------------------------------------
    def keypoint_loss(self, out: PipelineOutput, keypoints: torch.Tensor) -> torch.Tensor:
        """Keypoint-head loss against (B, K, 3) ground truth in input-image pixels."""
        return self.keypoint_net.loss(out.keypoint_raw, keypoints, out.logits.shape[-2:])

    def patch_targets(self, mask: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Label crops (B*R, h, w) int64; classes a region may not predict become background."""
        crops = crop_labels(mask, boxes, self.patch_size)  # (B*R, h, w)
        region = self.regions(mask.shape[0])
        table = (self.target_table if self.restrict_classes else self.identity_table)[region]  # (B*R, C)
        return table.gather(1, crops.flatten(1)).view_as(crops)  # per-row lookup (B*R, h*w) -> (B*R, h, w)
