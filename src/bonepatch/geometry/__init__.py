"""Differentiable geometry: keypoint heatmaps, region boxes, crop and paste."""
from bonepatch.geometry.boxes import DEFAULT_KEYPOINT_PRIOR, boxes_from_keypoints, jitter_boxes
from bonepatch.geometry.crop_paste import CropPaste, crop_labels, crop_patches, paste_patches
from bonepatch.geometry.heatmaps import decode_heatmaps, decode_simcc, render_heatmaps, render_simcc

__all__ = ["DEFAULT_KEYPOINT_PRIOR", "boxes_from_keypoints", "jitter_boxes", "CropPaste", "crop_labels",
           "crop_patches", "paste_patches", "decode_heatmaps", "decode_simcc", "render_heatmaps", "render_simcc"]
