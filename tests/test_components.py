"""One component battery that every model config in conf/model/ goes through.

Each config is instantiated as ``train.py`` would (its ``_target_``), shrunk to tiny sizes, and
checked for forward, backward, finite outputs and the output contract at batch 1 and 3. A new
model config is picked up by the glob, so it cannot skip the battery.
"""
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from bonepatch.anatomy import NUM_CLASSES
from component_tester import check_component

ROOT = Path(__file__).resolve().parents[1]
MODEL_CONFIGS = sorted((ROOT / "conf" / "model").glob("*.yaml"))
H, W = 256, 64


def tiny_model(path: Path) -> torch.nn.Module:
    """The model of one conf/model/*.yaml at tiny sizes (the architecture and backbone kept)."""
    cfg = OmegaConf.create({"model": OmegaConf.load(path),
                            "preprocess": OmegaConf.load(ROOT / "conf/preprocess/clahe.yaml"),
                            "patches": OmegaConf.load(ROOT / "conf/patches/default.yaml")})
    if "keypoint_net" in cfg.model:
        cfg.model.keypoint_net.input_size = [128, 32]
        cfg.model.min_confidence = 0.0  # an untrained net is never confident: use its boxes anyway
        cfg.model.min_size = 16.0
    if "patch_size" in cfg.model:
        cfg.model.patch_size = [64, 64]
    torch.manual_seed(0)
    return instantiate(cfg.model)


def test_every_model_config_is_in_the_battery():
    assert {p.stem for p in MODEL_CONFIGS} >= {"pipeline", "single_stage", "fixed_patch"}


@pytest.mark.parametrize("b", [1, 3])
@pytest.mark.parametrize("path", MODEL_CONFIGS, ids=lambda p: p.stem)
def test_model_config_forward_backward(path, b):
    model = tiny_model(path).train()
    image = torch.rand(b, 1, H, W, generator=torch.Generator().manual_seed(b)) * 300
    out = check_component(model, image, params=model.parameters(), select=lambda o: o.logits)
    assert out.logits.shape == (b, NUM_CLASSES, H, W)
    if out.boxes is not None:
        assert out.boxes.shape[:1] == (b,) and out.boxes.shape[-2:] == (4, 2) and torch.isfinite(out.boxes).all()
        assert out.patch_logits.shape[0] == b * out.boxes.shape[1]
    if out.keypoints is not None:
        assert out.keypoints.shape == (b, 16, 2) and out.confidence.shape == (b, 16)
    with torch.inference_mode():  # eval mode gives the same label-map shape
        assert model.eval()(image).logits.argmax(1).shape == (b, H, W)
