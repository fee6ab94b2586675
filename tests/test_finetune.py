"""Fine-tuning: model.init_from loads a checkpoint's weights, training starts from them with
module.pretrained_lr_scale x the learning rate, and the result predicts without the start file."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import open_dict

from bonepatch import train as T
from bonepatch.checkpoint import load_model
from train_helpers import TINY, compose_cfg


def _start_weights(tiny_ckpt, path: Path) -> dict:
    """A plain state_dict far from any fresh initialisation (the tiny checkpoint's, shifted)."""
    model, _ = load_model(tiny_ckpt)
    g = torch.Generator().manual_seed(7)
    state = {k: (v + 0.05 * torch.randn(v.shape, generator=g)) if v.is_floating_point() else v
             for k, v in model.state_dict().items()}
    torch.save(state, path)
    return state


def test_init_from_loads_weights_and_lowers_their_learning_rate(tiny_ckpt, tmp_path):
    cfg = compose_cfg(tmp_path, ["experiment=smoke", *TINY, f"model.init_from={tiny_ckpt}", "module.scheduler=null"])
    model = T.instantiate(cfg.model)
    reference, _ = load_model(tiny_ckpt)
    for k, v in reference.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    assert model.pretrained_parameters == {n for n, _ in model.named_parameters()}
    module = T.instantiate(cfg.module, _partial_=True)(model=model)
    groups = {g["name"]: g["lr"] for g in module.configure_optimizers().param_groups}
    base = cfg.module.optimizer.lr
    assert groups == pytest.approx({"segmenter_pretrained": base * 0.1, "keypoint_net_pretrained": base * 0.1})
    fresh = T.instantiate(compose_cfg(tmp_path, ["experiment=smoke", *TINY, "module.scheduler=null"]).model)
    module = T.instantiate(cfg.module, _partial_=True)(model=fresh)
    assert {g["name"] for g in module.configure_optimizers().param_groups} == {"segmenter", "keypoint_net"}


def test_training_starts_from_the_loaded_weights(tiny_ckpt, tmp_path):
    start = _start_weights(tiny_ckpt, tmp_path / "start.pt")
    cfg = compose_cfg(tmp_path, ["experiment=smoke", *TINY, f"model.init_from={tmp_path / 'start.pt'}",
                                 "trainer.max_steps=1", "+trainer.limit_val_batches=1", "test=false",
                                 "callbacks.overlays=null"])
    T.run(cfg)
    (tmp_path / "start.pt").unlink()  # the fine-tuned checkpoint needs only itself
    tuned, config = load_model(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt")
    assert config["model"]["init_from"].endswith("start.pt")
    fresh = T.instantiate(compose_cfg(tmp_path, ["experiment=smoke", *TINY]).model).state_dict()
    for k, v in tuned.state_dict().items():
        if v.is_floating_point() and v.numel() > 100 and "bn" not in k and "running" not in k:
            assert (v - start[k]).abs().max() < 0.01 < (v - fresh[k]).abs().max(), k


def test_init_from_a_foreign_model_or_missing_file_fails_clearly(tmp_path):
    torch.save(torch.nn.Linear(3, 3).state_dict(), tmp_path / "other.pt")  # shares no tensor with the model
    with open_dict(cfg := compose_cfg(tmp_path, ["experiment=smoke", *TINY])):
        cfg.model.init_from = str(tmp_path / "other.pt")
    with pytest.raises(Exception, match="none of its"):
        T.instantiate(cfg.model)
    cfg.model.init_from = str(tmp_path / "missing.ckpt")
    with pytest.raises(Exception, match="no such file"):
        T.instantiate(cfg.model)
