"""bonepatch.diagnose (box coverage, oracle boxes) and benchmarks/diagnose_patches.py end to end."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from bonepatch.anatomy import CLASS_IDS, NUM_CLASSES
from bonepatch.diagnose import PatchDiagnosis, class_coverage
from bonepatch.geometry.boxes import cxcywh_to_boxes
from bonepatch.models.keypoint_net import KeypointNet
from bonepatch.models.pipeline import KeypointPatchSegmenter
from bonepatch.models.segmenter import PatchSegmenter

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return KeypointPatchSegmenter(KeypointNet("test_resnet", input_size=(128, 32)),
                                  PatchSegmenter(encoder="resnet18", encoder_weights=None, num_regions=7),
                                  patch_size=(32, 32), min_size=8.0).eval()


def test_class_coverage_counts_only_boxes_allowed_the_class(model):
    mask = torch.zeros(1, 64, 32, dtype=torch.long)
    mask[0, 2:10, 10:20] = CLASS_IDS["skull"]  # 80 px, top
    mask[0, 40:50, 2:6] = CLASS_IDS["femur"]  # 40 px, lower left
    centres = torch.zeros(1, 7, 4)
    centres[..., :] = torch.tensor([5.0, 5.0, 4.0, 4.0])  # every box small, top-left corner
    centres[0, 0] = torch.tensor([16.0, 32.0, 40.0, 70.0])  # head box: the whole image
    covered, total = class_coverage(model, cxcywh_to_boxes(centres), mask)
    assert total[CLASS_IDS["skull"] - 1] == 80 and total[CLASS_IDS["femur"] - 1] == 40
    assert covered[CLASS_IDS["skull"] - 1] == 80  # the head patch may predict the skull
    assert covered[CLASS_IDS["femur"] - 1] == 0  # it covers the femur too, but may not predict it
    assert covered.sum() == 80 and covered.shape == (NUM_CLASSES - 1,)


def test_patch_diagnosis_accumulates_both_box_modes(model):
    from bonepatch.data.dataset import PhantomDataset
    ds = PhantomDataset(2, 2, config={"height": 256, "width": 64, "mm_per_px": 9.6, "view": "both"})
    batch = [ds[i] for i in range(2)]
    diag = PatchDiagnosis()
    diag.update(model, *(torch.stack([s[k] for s in batch]) for k in ("image", "mask", "keypoints")))
    res = diag.result()
    assert res["views"] == 2
    for key in ("dice_pred", "dice_true", "coverage_pred", "coverage_true"):
        assert len(res[key]) == NUM_CLASSES - 1
    assert all(0.0 <= c <= 1.0 for c in res["coverage_true"] if c == c)
    assert res["nme"] > 0 and set(res["keypoint_nme"]) >= {"skull_top", "knee_r"}


def test_diagnose_script_end_to_end(tiny_ckpt, tmp_path):
    import diagnose_patches

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "benchmarks.md").write_text("# Benchmarks\nkeep me\n")
    diagnose_patches.main(["--ckpt", str(tiny_ckpt), "--name", "t", "--test-views", "4", "--batch", "2",
                           "--docs", str(docs)])
    report = json.loads((docs / "benchmarks" / "diagnose_t.json").read_text())
    assert report["result"]["views"] == 4 and report["phantom"]["height"] == 256
    md = (docs / "benchmarks.md").read_text()
    assert "keep me" in md and "<!-- diagnose:t:start -->" in md and "Dice, true keypoints" in md
    assert (docs / "img" / "diagnose_t.png").stat().st_size > 5000
