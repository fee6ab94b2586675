"""Training / evaluation side of ``benchmarks/compare.py``: profiles, configs, shared data, one method.

Every method is composed from ``conf/`` (``experiment=<method>``) with the same overrides for
the budget (optimiser steps, batch size, learning rate, validation cadence, resolution), and
trained by the same stage loop as ``bonepatch.train.run`` (``check_config``, ``_make_trainer``),
but on datasets rendered once (``CachedDataset``) and shared by all methods.
"""
from __future__ import annotations

import time
from pathlib import Path

import lightning as L
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

import bench_utils as bench
from bonepatch.data.cache import CachedDataset
from bonepatch.data.datamodule import BoneScanDataModule
from bonepatch.data.dataset import PhantomDataset
from bonepatch.train import _make_trainer, check_config

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("joint", "staged", "single_stage", "fixed_patch")

#: Everything that differs between profiles; all methods of a run share one profile.
PROFILES = {
    "tiny": dict(phantom={"height": 256, "width": 64, "mm_per_px": 9.6}, kp_input=[128, 32],
                 patch=[64, 64], min_size=8.0, batch=2, steps=6, val_times=2, lr=2e-3, train_len=8, val_len=2,
                 test_len=4, trainer="cpu", loader_workers=0, infer_batch=2, infer_reps=1,
                 threads=2, channels_last=False, step_check=0),
    "cpu": dict(phantom={"height": 512, "width": 128, "mm_per_px": 4.8}, kp_input=[256, 64],
                patch=[96, 96], min_size=16.0, batch=4, steps=180, lr=2e-3, train_len=720,
                val_len=16, test_len=200, trainer="cpu", loader_workers=0, infer_batch=4,
                infer_reps=5, threads=2, channels_last=False, step_check=0),
    "gpu": dict(phantom={"height": 1024, "width": 256}, kp_input=[512, 128], patch=[192, 192],
                min_size=32.0, batch=32, steps="auto", train_seconds=240.0, lr=1e-3, train_len=3000, val_len=64,
                test_len=256, trainer="gpu", loader_workers=6, infer_batch=32, infer_reps=10,
                threads=None, channels_last=True, step_check=40),
}
SEEDS = {"train": 0, "val": 1, "test": 2}  # the phantom seeds of conf/data/phantom.yaml
TEACHER_FORCING_FRACTION = 0.5  # teacher forcing decays over this share of a joint run's steps


def make_data(prof: dict, workers: int = 0) -> tuple[BoneScanDataModule, dict]:
    """Render train / val / test once (all cores) -> datamodule shared by every method, timings."""
    times, sets = {}, {}
    for split, length in (("train", prof["train_len"]), ("val", prof["val_len"]), ("test", prof["test_len"])):
        t0 = time.perf_counter()
        sets[split] = CachedDataset(PhantomDataset(SEEDS[split], length, config={
            **prof["phantom"], "view": "both", "rib_label": "region"}), workers=workers)
        times[f"render_{split}_s"] = time.perf_counter() - t0
    dm = BoneScanDataModule(sets["train"], sets["val"], sets["test"], batch_size=prof["batch"],
                            num_workers=prof["loader_workers"], pin_memory=prof["trainer"] == "gpu")
    info = {"seeds": SEEDS, **{f"{k}_views": len(v) for k, v in sets.items()}, **times,
            "phantom": prof["phantom"], "views": "anterior (even index) and posterior (odd index)"}
    return dm, info


def compose_method(method: str, prof: dict, steps: int, out_dir: Path) -> DictConfig:
    """The config of one method at this profile's budget (``experiment=<method>`` + overrides)."""
    val_every = max(1, steps // prof.get("val_times", 4))
    overrides = [
        f"experiment={method}", f"trainer={prof['trainer']}", "~logger",
        "callbacks.progress_bar=null", "callbacks.overlays=null", "callbacks.lr_monitor=null",
        "callbacks.model_checkpoint.save_last=false",
        "trainer.enable_model_summary=false", "++trainer.enable_progress_bar=false",
        "trainer.max_epochs=-1", f"trainer.max_steps={steps}", f"trainer.val_check_interval={val_every}",
        "trainer.check_val_every_n_epoch=null", "trainer.log_every_n_steps=10",
        f"data.batch_size={prof['batch']}", f"module.optimizer.lr={prof['lr']}",
        f"paths.output_dir={out_dir / method}", f"paths.log_dir={out_dir / 'logs'}",
    ] + [f"++data.train_dataset.config.{k}={v}" for k, v in prof["phantom"].items()]
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        if prof.get("seed") is not None:
            cfg.seed = int(prof["seed"])
        if "keypoint_net" in cfg.model:
            cfg.model.keypoint_net.input_size = prof["kp_input"]
            cfg.model.min_size = prof["min_size"]
        if "patch_size" in cfg.model:
            cfg.model.patch_size = prof["patch"]
        cfg.module.teacher_forcing.steps = int(TEACHER_FORCING_FRACTION * steps)
        if cfg.get("stages"):  # staged: the same total budget split over the stages
            n = len(cfg.stages)
            for i, stage in enumerate(cfg.stages):
                s = steps // n if i < n - 1 else steps - (n - 1) * (steps // n)
                stage.trainer = {"max_steps": s,
                                 "val_check_interval": max(1, s // max(1, prof.get("val_times", 4) // 2))}
                if OmegaConf.select(stage, "module.teacher_forcing") is not None:
                    stage.module.teacher_forcing.steps = int(TEACHER_FORCING_FRACTION * s)
        cfg.applied_overrides = apply_overrides(cfg, prof.get("overrides", ()))  # last: wins over the profile
    return cfg


_ABSENT = object()


def _refuse_interpolation(cfg: DictConfig, key: str) -> None:
    """An update below an interpolated node (``model.patches: ${patches}``) would replace the link."""
    parts = key.replace("[", ".[").split(".")
    for i in range(1, len(parts)):
        head, last = ".".join(parts[:i]).replace(".[", "["), parts[i]
        node = OmegaConf.select(cfg, head, default=None)
        if not OmegaConf.is_config(node):
            return
        name = int(last.strip("[]")) if last.startswith("[") else last
        if isinstance(name, str) and name not in node:
            return
        if OmegaConf.is_interpolation(node, name) and i < len(parts) - 1:
            raise ValueError(f"--set {key}: {head + ('' if last.startswith('[') else '.') + last} is a link "
                             f"({OmegaConf.to_container(node)[name]}); set the linked key instead")


def apply_overrides(cfg: DictConfig, items) -> list[str]:
    """Apply ``KEY=VALUE`` (KEY exists in cfg) / ``++KEY=VALUE`` (its parent exists) items, VALUE
    parsed as YAML, dicts merged; items that do not fit this config (e.g. ``model.margin`` on a
    baseline) are skipped. Returns the items applied."""
    applied = []
    for item in items:
        key, _, value = item.partition("=")
        add = key.startswith("++")
        key = key.removeprefix("++")
        parent = key.rsplit(".", 1)[0] if "." in key.split("[")[-1] else key.rsplit("[", 1)[0]
        _refuse_interpolation(cfg, key)
        here = OmegaConf.select(cfg, key, default=_ABSENT) is not _ABSENT
        if here or (add and "." in key and OmegaConf.select(cfg, parent, default=None) is not None):
            OmegaConf.update(cfg, key, yaml.safe_load(value), force_add=True)
            applied.append(item)
    return applied


def build_model(cfg: DictConfig, channels_last: bool) -> torch.nn.Module:
    model = instantiate(cfg.model)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def train_method(cfg: DictConfig, dm: BoneScanDataModule, timer: bench.StepTimer,
                 channels_last: bool = False) -> tuple[L.LightningModule, L.Trainer, dict]:
    """Fit every stage (the loop of ``bonepatch.train.run``), then test the best weights."""
    check_config(cfg)
    L.seed_everything(cfg.seed, workers=True)
    torch.set_float32_matmul_precision("high")
    model = build_model(cfg, channels_last)
    stages = cfg.get("stages") or [{}]
    t0, best = time.perf_counter(), ""
    for i, over in enumerate(stages):
        scfg = OmegaConf.merge(cfg, over)
        name = scfg.module.stage if len(stages) > 1 else ""
        module = instantiate(scfg.module, _partial_=True)(model=model)
        module.run_config = OmegaConf.to_container(scfg, resolve=True)
        trainer = _make_trainer(scfg, f"/{i}_{name}" if name else "")
        trainer.callbacks.append(timer)
        trainer.fit(module, datamodule=dm)
        best = getattr(trainer.checkpoint_callback, "best_model_path", "")
        if best and i < len(stages) - 1:  # the next stage starts from this stage's best weights
            module.load_state_dict(torch.load(best, map_location="cpu", weights_only=True)["state_dict"])
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    trainer.test(module, datamodule=dm, ckpt_path=best or None, weights_only=True, verbose=False)
    info = {"train_wall_s": train_s, "test_wall_s": time.perf_counter() - t0,
            "best_checkpoint": Path(best).name if best else None,
            "val_best": _float(getattr(trainer.checkpoint_callback, "best_model_score", None))}
    return module, trainer, info


def _float(x) -> float | None:
    return None if x is None else float(x)


def quick_fit(module: L.LightningModule, cfg: DictConfig, loader, steps: int, skip: int = 5) -> dict:
    """``steps`` training steps of ``module`` on ``loader`` with no validation/checkpoints: timing only."""
    timer = bench.StepTimer(skip=skip)
    tcfg = OmegaConf.merge(cfg.trainer, {"max_steps": steps, "max_epochs": -1, "val_check_interval": None,
                                         "check_val_every_n_epoch": 1, "limit_val_batches": 0})
    trainer = instantiate(tcfg, callbacks=[timer], logger=False, enable_checkpointing=False)
    trainer.fit(module, train_dataloaders=loader)
    return timer.summary()


def calibrate_steps(methods, prof: dict, dm: BoneScanDataModule, out_dir: Path, seconds: float,
                    probe: int = 20, lo: int = 120, hi: int = 4000) -> tuple[int, dict]:
    """Optimiser steps S such that all methods' training is predicted to take ``seconds``
    (per-step times measured over ``probe`` steps; staged costs at most what joint costs)."""
    step_s = {}
    for m in methods:
        kind = "joint" if m == "staged" else m
        if kind not in step_s:
            cfg = compose_method(kind, prof, probe, out_dir / "calibrate")
            L.seed_everything(cfg.seed)
            module = instantiate(cfg.module, _partial_=True)(model=build_model(cfg, prof["channels_last"]))
            step_s[kind] = quick_fit(module, cfg, dm.train_dataloader(), probe, skip=probe // 2)["step_s"]
    total = sum(step_s["joint" if m == "staged" else m] for m in methods)
    steps = int(min(max(seconds / total, lo), hi)) // 12 * 12
    return steps, {"probe_steps": probe, "step_s": step_s, "target_train_s": seconds}


def gpu_step_check(module: L.LightningModule, cfg: DictConfig, dm: BoneScanDataModule, steps: int) -> dict:
    """Step time through the DataLoader vs on one batch held on the GPU (data not the bottleneck?)."""
    device = module.device
    batch = next(iter(dm.train_dataloader()))
    batch = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in batch.items()}
    pre = quick_fit(module, cfg, bench.RepeatBatch(batch, steps), steps)
    loader = quick_fit(module, cfg, dm.train_dataloader(), steps)
    return {"steps": steps, "preloaded_step_s": pre["step_s"], "loader_step_s": loader["step_s"],
            "loader_overhead": loader["step_s"] / pre["step_s"] - 1.0}


@torch.no_grad()
def predict_view(module: L.LightningModule, dataset, index: int, precision: str) -> dict:
    """Prediction of one test view for the overlay: label map, keypoints, boxes (numpy)."""
    model = module.model.eval()
    device = module.device
    sample = dataset[index]
    with bench.autocast_for(device, precision):
        out = model(sample["image"][None].to(device))
    res = {"image": sample["image"][0].numpy(), "truth": sample["mask"].numpy(),
           "pred": out.logits.float().argmax(1)[0].cpu().numpy(), "keypoints": None, "boxes": None}
    if out.keypoints is not None:
        conf = out.confidence[0, :, None] if out.confidence is not None else torch.ones_like(out.keypoints[0, :, :1])
        res["keypoints"] = torch.cat([out.keypoints[0], conf], -1).float().cpu().numpy()
    if out.boxes is not None:
        res["boxes"] = out.boxes[0].float().cpu().numpy()
    return res
