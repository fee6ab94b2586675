"""Fine-tuning: ``model.init_from=PATH`` starts a model from another run's weights.

Every model takes ``init_from`` (None, or a checkpoint written by ``train.py`` / a plain
``state_dict`` file, loaded with ``weights_only=True``): the tensors whose names and shapes match
are copied in, and the model records their parameter names in ``pretrained_parameters`` so the
LightningModule gives them ``module.pretrained_lr_scale`` x the learning rate. A checkpoint
that shares no tensor with the model is an error. ``resolve_init_from`` is the one place that
turns the setting into a file (a named default, e.g. shipped weights, is one more branch there).
"""
from __future__ import annotations

import logging
import pickle
from pathlib import Path

import torch
from torch import nn

from bonepatch.checkpoint import model_state, resolve_checkpoint

log = logging.getLogger("bonepatch")


def resolve_init_from(spec) -> Path:
    """The weights file named by ``model.init_from`` (``default``: the shipped weights)."""
    path = resolve_checkpoint(spec)
    if not path.is_file():
        raise FileNotFoundError(f"model.init_from={spec}: no such file; give a checkpoint written by train.py "
                                "(e.g. logs/joint/runs/<date>/checkpoints/last.ckpt) or a state_dict file")
    return path


def pretrained_state(path: Path) -> dict[str, torch.Tensor]:
    """Model tensors of a bonepatch / Lightning checkpoint (``model.*`` entries) or a plain state_dict."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        raise ValueError(f"model.init_from={path}: cannot be loaded safely (weights_only): "
                         f"{str(err).splitlines()[0]}") from err
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = model_state(obj)
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"model.init_from={path}: neither a train.py checkpoint nor a state_dict of tensors")
    return obj


def load_pretrained(model: nn.Module, spec) -> frozenset[str]:
    """Copy the matching tensors of ``spec``'s weights into ``model``; the loaded parameter names.

    None / "" loads nothing. Tensors missing from the file or of another shape keep their fresh
    initialisation (logged); no match at all is a ValueError.
    """
    if spec in (None, ""):
        return frozenset()
    path = resolve_init_from(spec)
    state, own = pretrained_state(path), model.state_dict()
    matched = {k: v for k, v in state.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
    if not matched:
        raise ValueError(f"model.init_from={path}: none of its {len(state)} tensors fits this "
                         f"{type(model).__name__}; start from a checkpoint of the same model type")
    model.load_state_dict(matched, strict=False)
    fresh = sorted(set(own) - set(matched))
    log.info("model.init_from=%s: %d of %d tensors loaded%s", path, len(matched), len(own),
             f"; fresh: {', '.join(fresh[:8])}{' ...' if len(fresh) > 8 else ''}" if fresh else "")
    return frozenset(matched) & {name for name, _ in model.named_parameters()}
