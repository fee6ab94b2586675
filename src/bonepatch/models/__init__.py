"""Models: every one maps ``(image (B,1,H,W), keypoints=None) -> PipelineOutput``."""
from bonepatch.models.baselines import FixedGridPatchSegmenter, SingleStageSegmenter
from bonepatch.models.keypoint_net import KeypointNet, KeypointOutput
from bonepatch.models.pipeline import KeypointPatchSegmenter, PipelineOutput
from bonepatch.models.segmenter import PatchSegmenter

__all__ = ["FixedGridPatchSegmenter", "SingleStageSegmenter", "KeypointNet", "KeypointOutput",
           "KeypointPatchSegmenter", "PipelineOutput", "PatchSegmenter"]
