"""Lightning callbacks of our own: validation overlays as pictures."""
from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np

from .viz import montage, overlay, save_png


class ValidationOverlays(L.Callback):
    """Every ``every_n_epochs`` validation epochs: image, true and predicted label maps,
    keypoints and boxes of up to ``max_views`` views, saved as PNG under ``out_dir`` and sent to
    the logger when it takes images (wandb's ``log_image``)."""

    def __init__(self, out_dir: str, every_n_epochs: int = 1, max_views: int = 2):
        self.out_dir, self.every, self.max_views = Path(out_dir), max(1, int(every_n_epochs)), max_views

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        last = getattr(pl_module, "_last_eval", None)
        if last is None or trainer.sanity_checking or not trainer.is_global_zero:
            return
        if trainer.current_epoch % self.every:
            return
        batch, out = last
        pictures = []
        for i in range(min(self.max_views, batch["image"].shape[0])):
            image = batch["image"][i, 0].float().cpu().numpy()
            truth = batch["mask"][i].cpu().numpy()
            pred = out.logits[i].argmax(0).cpu().numpy()
            kp = None if out.keypoints is None else np.concatenate(
                [out.keypoints[i].float().cpu().numpy(), out.confidence[i, :, None].float().cpu().numpy()], 1)
            boxes = None if out.boxes is None else out.boxes[i].float().cpu().numpy()
            pictures.append(overlay(image, truth, legend=False, scale=1, title="truth"))
            pictures.append(overlay(image, pred, kp, boxes, scale=1, title="prediction"))
        picture = montage(pictures)
        path = save_png(picture, self.out_dir / f"val_epoch{trainer.current_epoch:03d}.png")
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image(key="val/overlay", images=[str(path)], step=trainer.global_step)
