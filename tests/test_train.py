"""Training framework: experiments compose and run, learning happens, resume, sweeps, errors."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from omegaconf import open_dict

from bonepatch import train as T
from bonepatch.checkpoint import load_model
from train_helpers import ROOT, TINY, compose_cfg

EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_runs_fast_dev_run(tmp_path, experiment):
    cfg = compose_cfg(tmp_path, [f"experiment={experiment}", "trainer.fast_dev_run=true", *TINY])
    T.run(cfg)
    assert (Path(cfg.paths.output_dir) / "metrics_test.json").is_file()


class _Record(L.Callback):
    def __init__(self):
        self.losses, self.start_step = [], None

    def on_train_start(self, trainer, pl_module):
        self.start_step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))


def _fit(cfg, record: _Record, ckpt_path=None):
    model = T.instantiate(cfg.model)
    module = T.instantiate(cfg.module, _partial_=True)(model=model)
    module.run_config = T.OmegaConf.to_container(cfg, resolve=True)
    trainer = T._make_trainer(cfg, "")
    trainer.callbacks.append(record)
    trainer.fit(module, datamodule=T.instantiate(cfg.data), ckpt_path=ckpt_path)
    return trainer, module


def test_joint_loss_decreases_when_overfitting_a_few_batches(tmp_path):
    torch.manual_seed(0)
    cfg = compose_cfg(tmp_path, ["experiment=joint", *TINY, "trainer.max_steps=20", "trainer.max_epochs=20",
                                 "trainer.overfit_batches=1", "trainer.limit_val_batches=0",
                                 "module.scheduler=null", "callbacks.model_checkpoint=null",
                                 "callbacks.overlays=null"])
    record = _Record()
    _fit(cfg, record)
    first, last = sum(record.losses[:3]) / 3, sum(record.losses[-3:]) / 3
    assert len(record.losses) == 20 and last < 0.7 * first, (first, last)


def test_resume_restores_global_step_and_optimizer(tmp_path):
    base = ["experiment=smoke", *TINY, "trainer.max_epochs=2", "trainer.limit_val_batches=1"]
    cfg = compose_cfg(tmp_path, base)
    with open_dict(cfg):  # where `ckpt_path=last` looks: <log_dir>/<task>/runs/*/checkpoints
        cfg.paths.output_dir = str(tmp_path / "logs" / "smoke" / "runs" / "first")
    trainer, _ = _fit(cfg, _Record())
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    assert last.is_file() and trainer.global_step == 8
    cfg2 = compose_cfg(tmp_path, base + ["trainer.max_epochs=3", "ckpt_path=last"])
    with open_dict(cfg2):
        cfg2.paths.output_dir = str(tmp_path / "run2")
    record = _Record()
    trainer2, _ = _fit(cfg2, record, ckpt_path=T.resolve_ckpt_path(cfg2))
    assert record.start_step == 8 and trainer2.global_step == 12
    assert trainer2.optimizers[0].state  # optimiser moments came back too


def test_checkpoint_carries_config_and_loads_safely(tmp_path):
    cfg = compose_cfg(tmp_path, ["experiment=smoke", *TINY, "trainer.max_steps=2",
                                 "trainer.limit_val_batches=1", "test=false"])
    T.run(cfg)
    model, config = load_model(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt")
    assert config["task_name"] == "smoke" and not model.training
    image = torch.rand(1, 1, 256, 64) * 50
    with torch.inference_mode():
        out = model(image)
    assert out.logits.shape == (1, 13, 256, 64) and torch.isfinite(out.logits).all()


def test_nan_loss_stops_the_run_with_a_message(tmp_path, monkeypatch):
    cfg = compose_cfg(tmp_path, ["experiment=smoke", *TINY, "trainer.max_epochs=1"])
    monkeypatch.setattr("bonepatch.losses.SegmentationLoss.forward",
                        lambda self, logits, target: logits.sum() * float("nan"))
    with pytest.raises(SystemExit, match="loss became nan"):
        T.run(cfg)


@pytest.mark.parametrize("overrides, message", [
    (["experiment=single_stage", "module.stage=segment"], "baseline"),
    (["experiment=joint", "model.patch_size=[100,100]"], "divisible by 32"),
    (["experiment=joint", "patches.0.keypoints=[nose]"], "unknown keypoint"),
    (["experiment=joint", "+model.keypoint_net.num_keypoints=12"], "num_keypoints"),
])
def test_incompatible_settings_fail_before_training(tmp_path, overrides, message):
    cfg = compose_cfg(tmp_path, overrides + ["~logger"], tiny_model=False)
    with pytest.raises((ValueError, KeyError), match=message):
        T.check_config(cfg)


def _cli(tmp_path, *args, timeout=600):
    env = {**os.environ, "BONEPATCH_LOG_DIR": str(tmp_path / "logs"), "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_unknown_experiment_lists_the_options(tmp_path):
    res = _cli(tmp_path, "experiment=nope")
    assert res.returncode != 0 and "joint" in res.stderr and "smoke" in res.stderr


def test_sweep_of_two_trials_runs(tmp_path):
    res = _cli(tmp_path, "-m", "hparams_search=clahe_patch", "experiment=smoke",
               "hydra.sweeper.n_trials=2", "trainer.fast_dev_run=true", *TINY)
    assert res.returncode == 0, res.stderr[-3000:]
    results = list((tmp_path / "logs").rglob("optimization_results.yaml"))
    assert results and "best_value" in results[0].read_text()


@pytest.mark.slow
def test_smoke_reaches_a_test_dice_above_one_half(tmp_path):
    cfg = compose_cfg(tmp_path, ["experiment=smoke"])
    T.run(cfg)
    import json
    metrics = json.loads((Path(cfg.paths.output_dir) / "metrics_test.json").read_text())
    assert metrics["dice_mean"] > 0.5, metrics


@pytest.mark.slow
def test_two_process_cpu_ddp_run_completes(tmp_path):
    res = _cli(tmp_path, "experiment=smoke", "trainer=ddp", "trainer.accelerator=cpu",
               "trainer.devices=2", "trainer.precision=32-true", "trainer.sync_batchnorm=false",
               "trainer.max_epochs=1", *TINY)
    assert res.returncode == 0, res.stderr[-3000:]
    assert list((tmp_path / "logs").rglob("metrics_test.json"))


def test_experiments_run_on_folder_data_too(tmp_path):
    from bonepatch.data.phantom import PhantomConfig, write_dataset

    write_dataset(tmp_path / "ds", n=6, seed=0, config=PhantomConfig(height=256, width=64, mm_per_px=9.6))
    for experiment in ("joint", "single_stage", "staged"):
        cfg = compose_cfg(tmp_path, [f"experiment={experiment}", "data=folder",
                                     f"data.train_dataset.root={tmp_path / 'ds'}"])
        dm = T.instantiate(cfg.data)
        train = dm.datasets["train"]
        assert len(train) >= 1 and train[0]["mask"].shape == tuple(cfg.budget.folder_size)  # the CPU budget's size


def test_gpu_trainer_config_composes_and_runs_on_cpu(tmp_path):
    """`trainer=gpu` (README's GPU settings: bf16-mixed, cudnn benchmark) minus the device runs a
    fast_dev_run on the CPU: no GPU-only key in conf/trainer/gpu.yaml."""
    cfg = compose_cfg(tmp_path, ["experiment=joint", "trainer=gpu", "trainer.accelerator=cpu",
                                 "trainer.fast_dev_run=true", "data.num_workers=1", *TINY])
    assert cfg.trainer.precision == "bf16-mixed" and cfg.trainer.benchmark is True
    T.run(cfg)
    assert (Path(cfg.paths.output_dir) / "metrics_test.json").is_file()
