"""Fold ensembles: several trained models as one (``predict.py ckpt=[a,b,c]`` or ``ckpt=FOLDER``).

:class:`EnsembleModel` runs every member and returns one ``PipelineOutput`` whose logits are the
log of the members' mean class probability (so ``softmax`` gives that mean back) and whose
keypoints, confidences and boxes are the members' means.

>>> from bonepatch.models.baselines import SingleStageSegmenter
>>> members = [SingleStageSegmenter({"encoder": "resnet18"}).eval() for _ in range(2)]
>>> out = EnsembleModel(members)(torch.rand(1, 1, 64, 32) * 10)
>>> out.logits.shape, bool(torch.allclose(out.logits.softmax(1).sum(1), torch.ones(1, 64, 32)))
(torch.Size([1, 13, 64, 32]), True)
"""
from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from .checkpoint import CheckpointError, model_from_checkpoint, postprocess_of, read_checkpoint, resolve_checkpoint
from .models.pipeline import PipelineOutput
from .predict_model import model_geometry
from .postprocess import chosen_classes, combine

log = logging.getLogger("bonepatch")


def _mean(values: list) -> torch.Tensor | None:
    if any(v is None for v in values) or len({tuple(v.shape) for v in values}) != 1:
        return None
    return torch.stack([v.float() for v in values]).mean(0)


class EnsembleModel(nn.Module):
    """Mean of several models' probabilities (see the module docstring); members in eval mode."""

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one model")
        self.members = nn.ModuleList(members)

    def forward(self, image: torch.Tensor, keypoints: torch.Tensor | None = None) -> PipelineOutput:
        """image (B, 1, H, W) counts -> PipelineOutput: logits (B, C, H, W) = log mean probability."""
        outs = [m(image, keypoints) for m in self.members]
        probs = torch.stack([o.logits.float().softmax(1) for o in outs]).mean(0)
        return PipelineOutput(probs.clamp_min(1e-12).log(), _mean([o.keypoints for o in outs]),
                              _mean([o.confidence for o in outs]), boxes=_mean([o.boxes for o in outs]))


def _run_checkpoints(folder: Path) -> list[Path]:
    """The checkpoints a folder stands for: per folder holding ``*.ckpt`` below it, the best
    (``best-*.ckpt``, else ``last.ckpt``) of a run's checkpoint folder (of a staged run: its last
    stage ``<i>_<stage>/``), or every ``*.ckpt`` of a folder of other names."""
    dirs = sorted({p.parent for p in folder.rglob("*.ckpt")})
    stages = [d for d in dirs if re.fullmatch(r"\d+_\w+", d.name)]
    last_stage = {d.parent: max((s for s in stages if s.parent == d.parent), key=lambda s: int(s.name.split("_")[0]))
                  for d in stages}
    found = []
    for d in dirs:
        if d in stages and last_stage[d.parent] != d:
            continue
        best, last = sorted(d.glob("best-*.ckpt")), d / "last.ckpt"
        found += best[-1:] if best else [last] if last.is_file() else sorted(d.glob("*.ckpt"))
    return found


def checkpoint_files(spec) -> list[Path]:
    """Checkpoint files of ``ckpt=``: a file, a folder (``_run_checkpoints``: one per run, e.g. per
    fold of a ``-m`` run), or a list of those."""
    specs = [spec] if spec is None or isinstance(spec, (str, Path)) else list(spec)
    files: list[Path] = []
    for s in map(resolve_checkpoint, specs):  # "default": the shipped weights
        if s.is_dir():
            found = _run_checkpoints(s)
            if not found:
                raise CheckpointError(f"{s}: no .ckpt files in this folder or below it; give checkpoint files")
            files += found
        else:
            files.append(s)
    return files


def load_models(spec, trust: bool = False) -> tuple[nn.Module, dict, tuple[int, ...]]:
    """(model, config of the first checkpoint, class ids to post-process) for ``ckpt=``.

    One checkpoint gives its own model and its stored choice; several give an EnsembleModel and
    the choice combined from their validation results (``postprocess.combine``). All members
    must have been trained at the same input size and orientation.
    """
    files = checkpoint_files(spec)
    models, configs, entries = [], [], []
    for f in files:
        ckpt = read_checkpoint(f, trust=trust)
        model, config = model_from_checkpoint(ckpt, f)
        models.append(model)
        configs.append(config)
        entries.append(postprocess_of(ckpt))
    geometry = [model_geometry(c) for c in configs]
    if len(set(geometry)) > 1:
        raise CheckpointError("the checkpoints were trained at different input sizes / orientations "
                              f"{dict(zip(map(str, files), geometry))}; ensemble only models of one setting")
    chosen = chosen_classes(entries[0]) if len(files) == 1 else chosen_classes({"largest_component": combine(entries)})
    if len(files) > 1:
        log.info("ensemble of %d checkpoints: %s", len(files), ", ".join(map(str, files)))
    if chosen:
        log.info("post-processing chosen on validation: keep the largest piece of class ids %s", list(chosen))
    return (models[0] if len(models) == 1 else EnsembleModel(models).eval()), configs[0], chosen
