"""Training driver behind ``train.py``: config checks, stages, fit, test, metric for sweeps."""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from .anatomy import CLASSES, NUM_KEYPOINTS, as_patches
from .checkpoint import CheckpointError, set_postprocess
from .postprocess import PostprocessSelector

log = logging.getLogger("bonepatch")


def check_config(cfg: DictConfig) -> None:
    """Incompatible settings fail here, before any data or training, naming the fields."""
    model = cfg.model
    if "patches" in model and model.patches is not None:
        as_patches(OmegaConf.to_container(model.patches, resolve=True))  # KeyError lists names
    kp = model.get("keypoint_net")
    if kp is not None and int(kp.get("num_keypoints", NUM_KEYPOINTS)) != NUM_KEYPOINTS:
        raise ValueError(f"model.keypoint_net.num_keypoints={kp.num_keypoints} but the patches "
                         f"need the {NUM_KEYPOINTS} keypoints of bonepatch.anatomy.KEYPOINTS")
    size = model.get("patch_size")
    if size is not None:
        hw = [int(size)] * 2 if isinstance(size, (int, float)) else [int(s) for s in size]
        if any(s % 32 for s in hw):
            raise ValueError(f"model.patch_size={hw} must be divisible by 32 (the encoder's "
                             "output stride); e.g. 160, 192 or 224")
    stages = cfg.get("stages") or [{}]
    for over in stages:
        stage = OmegaConf.select(OmegaConf.create(over), "module.stage") or cfg.module.stage
        if stage != "joint" and "keypoint_net" not in model:
            raise ValueError(f"module.stage={stage} needs the keypoint-patch model, but "
                             f"model={model._target_} is a baseline: use module.stage=joint")


def resolve_ckpt_path(cfg: DictConfig) -> str | None:
    """``ckpt_path``: None, a file, or ``last`` = the newest last.ckpt of this task's runs."""
    path = cfg.get("ckpt_path")
    if path in (None, ""):
        return None
    if str(path) == "last":
        runs = Path(cfg.paths.log_dir) / cfg.task_name / "runs"
        found = sorted(runs.glob("*/checkpoints/**/last.ckpt"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise FileNotFoundError(f"ckpt_path=last: no last.ckpt under {runs}/*/checkpoints; "
                                    "start a fresh run without ckpt_path")
        return str(found[-1])
    if not Path(path).is_file():
        raise FileNotFoundError(f"ckpt_path={path} does not exist")
    return str(path)


def _make_trainer(cfg: DictConfig, stage_dir: str) -> L.Trainer:
    loggers = [instantiate(lg) for lg in (cfg.get("logger") or {}).values() if lg is not None]
    callbacks = []
    for name, cb in (cfg.get("callbacks") or {}).items():
        if cb is None or (name == "lr_monitor" and not loggers):  # it needs a logger
            continue
        if name == "model_checkpoint":
            cb = OmegaConf.merge(cb, {"dirpath": f"{cfg.paths.output_dir}/checkpoints{stage_dir}"})
        callbacks.append(instantiate(cb))
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)


def run(cfg: DictConfig) -> float | None:
    """Train (one stage or several), test, and return ``cfg.optimized_metric``."""
    check_config(cfg)
    if cfg.data.get("verify", True):  # every file of the data read once (cached) before anything else
        from .verify import require_verified

        require_verified(cfg.data)
    L.seed_everything(cfg.seed, workers=True)
    torch.set_float32_matmul_precision("high")
    resume = resolve_ckpt_path(cfg)
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model)  # plain torch module shared by every stage
    stages = cfg.get("stages") or [{}]
    trainer = module = None
    for i, over in enumerate(stages):
        scfg = OmegaConf.merge(cfg, over)
        name = scfg.module.stage if len(stages) > 1 else ""
        resolved = OmegaConf.to_container(scfg, resolve=True)
        module = instantiate(scfg.module, _partial_=True)(model=model)
        module.run_config = resolved  # saved in every checkpoint, for predict.py
        trainer = _make_trainer(scfg, f"/{i}_{name}" if name else "")
        if scfg.get("train", True):
            log.info("stage %d/%d: %s", i + 1, len(stages), name or scfg.module.stage)
            try:
                trainer.fit(module, datamodule=datamodule, ckpt_path=resume if i == 0 else None)
            except FloatingPointError as err:
                ckpt = trainer.checkpoint_callback
                raise SystemExit(f"training stopped: {err}\nlast good checkpoint: "
                                 f"{getattr(ckpt, 'last_model_path', '') or 'none yet'}") from err
            best = getattr(trainer.checkpoint_callback, "best_model_path", "")
            if best and i < len(stages) - 1:  # the next stage starts from this stage's best weights
                state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
                module.load_state_dict(state)
    metric = _metric(trainer, cfg.optimized_metric)
    if cfg.get("train", True) and cfg.get("postprocess_on_val", True):
        choose_postprocess(trainer, module, datamodule, cfg)
    if cfg.get("test", True) and datamodule.datasets.get("test") is None:
        log.info("no test split in the data: test skipped")
    elif cfg.get("test", True):
        best = getattr(trainer.checkpoint_callback, "best_model_path", "") if cfg.get("train", True) else ""
        trainer.test(module, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
    log.info("%s = %s; outputs in %s", cfg.optimized_metric, metric, cfg.paths.output_dir)
    return metric


def _metric(trainer: L.Trainer | None, name: str) -> float | None:
    ckpt = getattr(trainer, "checkpoint_callback", None)
    value = getattr(ckpt, "best_model_score", None) if ckpt is not None and ckpt.monitor == name else None
    if value is None and trainer is not None:
        value = trainer.callback_metrics.get(name)
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def choose_postprocess(trainer: L.Trainer, module, datamodule, cfg: DictConfig) -> dict | None:
    """Validate the best checkpoint once more; choose keep-largest-component per class where it
    raises validation Dice (``bonepatch.postprocess``); store the choice in the best and last
    checkpoints; write ``metrics_val.json`` (per-class Dice of that validation, the fold, the choice)."""
    if datamodule.datasets.get("val") is None or not trainer.limit_val_batches:
        return None
    ckpt = trainer.checkpoint_callback
    best = getattr(ckpt, "best_model_path", "") or ""
    module.postprocess_selector = PostprocessSelector()
    try:
        trainer.validate(module, datamodule=datamodule, ckpt_path=best or None, weights_only=True, verbose=False)
        choice = module.postprocess_selector.compute()
    finally:
        module.postprocess_selector = None
    module.postprocess = choice
    if trainer.is_global_zero:
        for path in {best, getattr(ckpt, "last_model_path", "") or ""} - {""}:
            try:
                set_postprocess(path, choice)
            except (CheckpointError, OSError) as err:  # the weights are safe; only the choice is not stored
                log.warning("post-processing choice not stored in %s: %s", path, err)
        data = cfg.data
        payload = {"split": "val", "fold": data.get("fold"), "view": data.get("view"), "checkpoint": best,
                   "classes": list(CLASSES[1:]), **(module.last_val_results or {}), "postprocess": choice}
        out = Path(cfg.paths.output_dir) / "metrics_val.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(payload, indent=2, allow_nan=True))
    log.info("post-processing chosen on validation: keep the largest piece of %s",
             choice["largest_component"] or "no class")
    return choice
