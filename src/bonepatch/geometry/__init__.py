"""Differentiable geometry: keypoint heatmaps, region boxes, crop and paste."""
from bonepatch.geometry.boxes import DEFAULT_KEYPOINT_PRIOR, boxes_from_keypoints, jitter_boxes
from bonepatch.geometry.crop_paste import (CropPaste, blend_probabilities, crop_labels, crop_patches, paste_patches,
                                          with_background)
from bonepatch.geometry.heatmaps import decode_heatmaps, decode_simcc, render_heatmaps, render_simcc

__all__ = ["DEFAULT_KEYPOINT_PRIOR", "boxes_from_keypoints", "jitter_boxes", "CropPaste", "blend_probabilities", "with_background", "crop_labels",
           "crop_patches", "paste_patches", "decode_heatmaps", "decode_simcc", "render_heatmaps", "render_simcc"]
