"""Where does a keypoint-patch model lose Dice? Predicted vs true-keypoint boxes, and box coverage.

For every test view the model runs twice: with its own keypoints (real inference) and with the
true keypoints (oracle boxes, the same rule ``boxes_from_keypoints``). Per class we record the
Dice of both, and the *coverage*: the share of the class's true pixels that lie inside at least
one box whose region may predict that class. Coverage below 1 is a hard ceiling on recall that
no segmenter can lift; a Dice gap between oracle and predicted boxes is the keypoints' share of
the error; what remains at oracle boxes is the segmenter's (or the budget's).
"""
from __future__ import annotations

import torch

from bonepatch.anatomy import CLASSES, KEYPOINTS, NUM_CLASSES
from bonepatch.geometry.crop_paste import paste_patches
from bonepatch.metrics import KeypointMetrics, dice_dict, dice_metric, keypoint_errors


def class_coverage(model, boxes: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Covered and total true pixels per bone class, summed over the batch.

    model: a KeypointPatchSegmenter (its regions' allowed classes); boxes (B, R, 4, 2);
    mask (B, H, W) int labels -> (covered (C-1,), total (C-1,)) float64 pixel counts.
    A pixel of class c is covered when a box whose region may predict c contains it.
    """
    b = boxes.shape[0]
    region = model.regions(b, boxes.device)
    allowed = model.segmenter.allowed[region].float()  # (B*R, C), as the model's paste uses it
    if not model.restrict_classes:
        allowed = torch.ones_like(allowed)
    ones = torch.ones(len(region), NUM_CLASSES, 2, 2, device=boxes.device)
    _, den = paste_patches(ones, boxes.float(), mask.shape[-2:], allowed, return_coverage=True)
    covered = den[:, 1:] > 0  # (B, C-1, H, W)
    onehot = torch.stack([mask == c for c in range(1, NUM_CLASSES)], 1)  # (B, C-1, H, W)
    return (covered & onehot).sum((0, 2, 3)).double(), onehot.sum((0, 2, 3)).double()


class PatchDiagnosis:
    """Accumulates Dice / coverage with predicted and true-keypoint boxes over batches.

    >>> d = PatchDiagnosis()
    >>> d.result()["views"]
    0
    """

    MODES = ("pred", "true")

    def __init__(self):
        self.dice = {m: dice_metric() for m in self.MODES}
        self.covered = {m: torch.zeros(NUM_CLASSES - 1, dtype=torch.float64) for m in self.MODES}
        self.total = torch.zeros(NUM_CLASSES - 1, dtype=torch.float64)
        self.kp = KeypointMetrics()
        self.kp_err = torch.zeros(len(KEYPOINTS), dtype=torch.float64)
        self.kp_n = torch.zeros(len(KEYPOINTS), dtype=torch.float64)
        self.views = 0

    @torch.no_grad()
    def update(self, model, image: torch.Tensor, mask: torch.Tensor, keypoints: torch.Tensor) -> None:
        """image (B, 1, H, W), mask (B, H, W), keypoints (B, K, 3): one batch, both box modes."""
        for mode in self.MODES:
            out = model(image, keypoints=keypoints if mode == "true" else None)
            self.dice[mode].update(out.logits.argmax(1).cpu(), mask.cpu())
            cov, tot = class_coverage(model, out.boxes, mask)
            self.covered[mode] += cov.cpu()
            if mode == "pred":
                self.total += tot.cpu()
                self.kp.update(out.keypoints.cpu(), keypoints.cpu())
                vis = keypoints[..., 2].cpu() > 0
                self.kp_err += (keypoint_errors(out.keypoints.cpu(), keypoints.cpu()) * vis).sum(0).double()
                self.kp_n += vis.sum(0).double()
        self.views += image.shape[0]

    def result(self) -> dict:
        """{"views", "classes", per mode: "dice_<mode>" and "coverage_<mode>" lists (C-1,),
        "dice_mean_<mode>", "nme", "pck@…", "keypoint_nme" {name: value}}."""
        out: dict = {"views": self.views, "classes": list(CLASSES[1:])}
        if not self.views:
            return out
        for m in self.MODES:
            per_class = self.dice[m].compute()
            out[f"dice_{m}"] = [float(v) for v in per_class]
            out[f"dice_mean_{m}"] = dice_dict(per_class)["dice_mean"]
            out[f"coverage_{m}"] = [float(c / t) if t else float("nan") for c, t in zip(self.covered[m], self.total)]
        out.update({k: float(v) for k, v in self.kp.compute().items()})
        out["keypoint_nme"] = {name: float(e / n) if n else float("nan")
                               for name, e, n in zip(KEYPOINTS, self.kp_err, self.kp_n)}
        return out
