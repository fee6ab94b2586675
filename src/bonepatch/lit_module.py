"""LightningModule: orchestrates training of any bonepatch model; the model itself is plain torch.

Stages (``stage``):
- ``keypoint``: the keypoint net only (heatmap MSE or SimCC KL, weighted by visibility);
- ``segment``: the segmenter on patches cut at jittered true keypoints; keypoint net frozen;
- ``joint``: everything; boxes come from true (jittered) keypoints with a probability that
  decays on a schedule (``teacher_forcing``), then from the predicted ones, so that early
  patches that miss the bones do not stall training. Baselines train with ``joint`` only.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import lightning as L
import torch

from .checkpoint import stamp_checkpoint
from .anatomy import CLASSES
from .losses import SegmentationLoss
from .metrics import dice_dict, make_metrics
from .postprocess import apply_postprocess, chosen_classes
from .value_checks import stage

STAGES = ("keypoint", "segment", "joint")


def is_pipeline(model: torch.nn.Module) -> bool:
    """True for the keypoint-patch pipeline (it has a keypoint net), False for the baselines."""
    return hasattr(model, "keypoint_net")


def check_stage(model: torch.nn.Module, stage: str) -> None:
    """Refuse incompatible settings before any training (error names the field)."""
    if stage not in STAGES:
        raise ValueError(f"module.stage={stage!r} is not one of {STAGES}")
    if stage != "joint" and not is_pipeline(model):
        raise ValueError(f"module.stage={stage!r} needs the keypoint-patch model, but model is "
                         f"{type(model).__name__} (a baseline): use module.stage=joint")


def teacher_forcing_prob(step: int, start: float, end: float, steps: int) -> float:
    """Linear decay from ``start`` to ``end`` over ``steps`` optimiser steps (then constant)."""
    if steps <= 0:
        return float(end)
    t = min(max(step / steps, 0.0), 1.0)
    return float(start + (end - start) * t)


class BonePatchModule(L.LightningModule):
    """Train / validate / test one model with one shared step.

    Args:
        model: a ``KeypointPatchSegmenter`` or a baseline (``PipelineOutput`` contract).
        optimizer: partial optimiser (``_partial_: true``); gets parameter groups.
        scheduler: partial scheduler taking ``(optimizer, total_steps=...)`` or None.
        stage: ``keypoint`` | ``segment`` | ``joint``.
        loss_weights: keypoint, patch and full-image segmentation loss weights.
        teacher_forcing: {start, end, steps}: probability that a training batch's boxes come
            from the true keypoints (jittered by ``keypoint_jitter`` x body height, per keypoint).
        keypoint_lr_scale: learning-rate factor of the keypoint net's parameters.
        pretrained_lr_scale: learning-rate factor of the parameters loaded by ``model.init_from``
            (the model's ``pretrained_parameters``), on top of ``keypoint_lr_scale``.
        val_boxes: ``pred`` (real inference) or ``gt`` (oracle boxes) at validation/test.
        augment: optional batch augmentation module applied to training batches on device.
        metrics_path: where ``test`` writes its per-class results as JSON.
    """

    def __init__(self, model: torch.nn.Module, optimizer, scheduler=None, stage: str = "joint",
                 loss_weights: dict | None = None, teacher_forcing: dict | None = None,
                 keypoint_jitter: float = 0.01, keypoint_lr_scale: float = 1.0,
                 val_boxes: str = "pred", augment: torch.nn.Module | None = None,
                 metrics_path: str | None = None, pretrained_lr_scale: float = 1.0):
        super().__init__()
        check_stage(model, stage)
        if val_boxes not in ("pred", "gt"):
            raise ValueError(f"module.val_boxes={val_boxes!r} must be 'pred' or 'gt'")
        self.model, self.augment = model, augment
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.stage, self.val_boxes = stage, val_boxes
        w = {"keypoint": 1.0, "patch": 1.0, "full": 1.0, **(loss_weights or {})}
        self.loss_weights = {k: float(v) for k, v in w.items()}
        self.teacher_forcing = {"start": 1.0, "end": 0.0, "steps": 0, **(teacher_forcing or {})}
        self.keypoint_jitter, self.keypoint_lr_scale = float(keypoint_jitter), float(keypoint_lr_scale)
        self.metrics_path, self.pretrained_lr_scale = metrics_path, float(pretrained_lr_scale)
        self.run_config: dict | None = None  # the resolved run config, set by the driver
        self.postprocess: dict | None = None  # choice made on validation (bonepatch.postprocess); used in test
        self.postprocess_selector = None  # a PostprocessSelector while the driver makes that choice
        self.last_val_results: dict | None = None
        self.seg_loss = SegmentationLoss()
        self.val_metrics, self.test_metrics = make_metrics(), make_metrics()
        if stage == "segment":
            self.model.keypoint_net.requires_grad_(False)

    def train(self, mode: bool = True):
        """Keep a frozen keypoint net in eval mode (its BatchNorm statistics stay fixed)."""
        super().train(mode)
        if self.stage == "segment":
            self.model.keypoint_net.eval()
        return self

    # ---- the one shared step ------------------------------------------------------------------
    def _box_keypoints(self, batch: dict, train: bool) -> torch.Tensor | None:
        """Keypoints that drive the boxes: true (jittered in training) or None = predicted."""
        if not is_pipeline(self.model) or self.stage == "keypoint":
            return None
        if train:
            p = 1.0 if self.stage == "segment" else teacher_forcing_prob(
                self.global_step, **self.teacher_forcing)
            if torch.rand(()).item() >= p:
                return None
            kp = batch["keypoints"].clone()
            height = (kp[..., 1].amax(-1) - kp[..., 1].amin(-1)).clamp_min(1.0)  # (B,)
            kp[..., :2] += torch.randn_like(kp[..., :2]) * self.keypoint_jitter * height[:, None, None]
            return kp
        return batch["keypoints"] if self.val_boxes == "gt" or self.stage == "segment" else None

    def _step(self, batch: dict, split: str) -> torch.Tensor:
        train = split == "train"
        if train and self.stage == "keypoint":  # the keypoint net alone: skip crop/segment/paste
            kp = self.model.predict_keypoints(self.model.preprocess(batch["image"]))
            size = batch["image"].shape[-2:]
            loss = self.model.keypoint_net.loss(kp.raw, batch["keypoints"], size)
            return self._finish(split, {"keypoint": self.loss_weights["keypoint"] * loss}, batch)
        out = self.model(batch["image"], keypoints=self._box_keypoints(batch, train))
        w, losses = self.loss_weights, {}
        if is_pipeline(self.model) and self.stage in ("keypoint", "joint") and w["keypoint"]:
            with stage("loss.keypoint"):
                losses["keypoint"] = w["keypoint"] * self.model.keypoint_loss(out, batch["keypoints"])
        if self.stage != "keypoint":
            if out.patch_logits is not None and w["patch"] and hasattr(self.model, "patch_targets"):
                with stage("loss.patch"):
                    target = self.model.patch_targets(batch["mask"], out.boxes)  # (B*R,h,w)
                    losses["patch"] = w["patch"] * self.seg_loss(out.patch_logits, target)
            if w["full"]:
                with stage("loss.full"):
                    losses["full"] = w["full"] * self.seg_loss(out.logits, batch["mask"])
        loss = self._finish(split, losses, batch)
        if not train:
            with stage("metrics"):
                metrics = self.val_metrics if split == "val" else self.test_metrics
                labels = out.logits.argmax(1)
                if split == "val" and self.postprocess_selector is not None:
                    self.postprocess_selector.update(labels, batch["mask"])
                if split == "test":
                    labels = apply_postprocess(labels, chosen_classes(self.postprocess))
                metrics["dice"].update(labels, batch["mask"])
                if out.keypoints is not None:
                    metrics["kp"].update(out.keypoints, batch["keypoints"])
            self._last_eval = (batch, out)
        return loss

    def _finish(self, split: str, losses: dict, batch: dict) -> torch.Tensor:
        """Sum and log the weighted losses; stop on a non-finite training loss."""
        train = split == "train"
        loss = sum(losses.values())
        bs = batch["image"].shape[0]
        for k, v in losses.items():
            self.log(f"{split}/loss_{k}", v, batch_size=bs)
        self.log(f"{split}/loss", loss, prog_bar=train, batch_size=bs)
        if train and not torch.isfinite(loss):
            raise FloatingPointError(
                f"loss became {loss.item()} at step {self.global_step} ({ {k: v.item() for k, v in losses.items()} }); "
                "training stopped, the last good checkpoint is kept. Lower the learning rate or "
                "check the data.")
        return loss

    def training_step(self, batch, batch_idx):
        if self.augment is not None:
            batch = self.augment(batch)
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def _log_metrics(self, split: str) -> dict[str, float]:
        metrics = self.val_metrics if split == "val" else self.test_metrics
        results = dice_dict(metrics["dice"].compute())
        if is_pipeline(self.model) and metrics["kp"].count > 0:
            results.update({k: float(v) for k, v in metrics["kp"].compute().items()})
        metrics.reset()
        self.log_dict({f"{split}/{k}": v for k, v in results.items() if not math.isnan(v)},
                      sync_dist=True)
        return results

    def on_validation_epoch_end(self):
        self.last_val_results = self._log_metrics("val")

    def on_test_epoch_end(self):
        results = self._log_metrics("test")
        if self.metrics_path and self.trainer.is_global_zero:
            path = Path(self.metrics_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            payload = {"model": type(self.model).__name__, "stage": self.stage, "classes": list(CLASSES[1:]),
                       "postprocess": (self.postprocess or {}).get("largest_component", []), **results}
            path.write_text(json.dumps(payload, indent=2, allow_nan=True))

    # ---- optimisation ---------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        kp_ids = {id(p) for p in self.model.keypoint_net.parameters()} if is_pipeline(self.model) else set()
        pretrained = set(getattr(self.model, "pretrained_parameters", ()))  # names loaded by model.init_from
        base = self.optimizer_factory(params=[torch.nn.Parameter(torch.zeros(1))]).defaults["lr"]
        groups: dict[str, dict] = {}
        for name, p in self.model.named_parameters():
            if not p.requires_grad:
                continue
            part, scale = ("keypoint_net", self.keypoint_lr_scale) if id(p) in kp_ids else ("segmenter", 1.0)
            if name in pretrained:
                part, scale = f"{part}_pretrained", scale * self.pretrained_lr_scale
            groups.setdefault(part, {"params": [], "name": part, "lr": base * scale})["params"].append(p)
        order = ("segmenter", "keypoint_net", "segmenter_pretrained", "keypoint_net_pretrained")
        groups = [groups[k] for k in order if k in groups]
        optimizer = self.optimizer_factory(params=groups)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer, total_steps=self.trainer.estimated_stepping_batches)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Store the resolved config so ``predict.py`` needs only the checkpoint."""
        stamp_checkpoint(checkpoint, self.run_config, self.postprocess)
