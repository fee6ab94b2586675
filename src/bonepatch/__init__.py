"""bonepatch: keypoint-guided, patch-based skeleton segmentation of whole-body bone scans."""
__version__ = "0.1.0"
