"""Compose the training config in tests the way `python train.py` does, into a temp folder."""
from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONF = str(ROOT / "conf")

#: Overrides that make any experiment tiny: quarter-resolution phantom, few views, no logger.
TINY = [
    "data.batch_size=2", "data.train_dataset.length=8", "data.val_dataset.length=2",
    "data.test_dataset.length=2", "data.train_dataset.config.height=256",
    "data.train_dataset.config.width=64", "++data.train_dataset.config.mm_per_px=9.6",
    "~logger", "callbacks.progress_bar=null", "trainer.enable_model_summary=false",
]


def compose_cfg(tmp_path: Path, overrides: list[str], tiny_model: bool = True) -> DictConfig:
    """The training config with every output under ``tmp_path`` (and a tiny model unless told)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(CONF, version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]  # as under @hydra.main, the run's config holds no hydra node
        cfg.paths.output_dir = str(tmp_path / "run")
        cfg.paths.log_dir = str(tmp_path / "logs")
        if not tiny_model:
            pass
        elif "keypoint_net" in cfg.model:  # small inputs for the tiny images
            cfg.model.keypoint_net.input_size = [128, 32]
            cfg.model.patch_size = [64, 64]
            cfg.model.min_size = 8.0
        elif "patch_size" in cfg.model:
            cfg.model.patch_size = [64, 64]
    return cfg
