"""The bonepatch checkpoint format: what a run writes into its Lightning checkpoint, and how a
model is loaded back from that file alone (its config travels inside it).

A Lightning checkpoint dict plus ``checkpoint["bonepatch"] = {"format": 1, "version": str,
"config": resolved run config dict}`` and optionally ``"postprocess": {"largest_component": [class
names], ...}`` (``bonepatch.postprocess``: chosen on validation after training; absent = no
post-processing); the weights are ``state_dict`` entries ``model.*``.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from . import __version__

FORMAT = 1
SUPPORTED_FORMATS = (1,)


class CheckpointError(ValueError):
    """A checkpoint that is not ours, is unreadable, or comes from an incompatible version."""


def stamp_checkpoint(checkpoint: dict, config: dict, postprocess: dict | None = None) -> None:
    """Write the bonepatch entry (format, version, resolved run config, post-processing choice if
    made) into a checkpoint dict."""
    checkpoint["bonepatch"] = {"format": FORMAT, "version": __version__, "config": config}
    if postprocess is not None:
        checkpoint["bonepatch"]["postprocess"] = postprocess


def set_postprocess(path: str | Path, postprocess: dict) -> None:
    """Store a post-processing choice in an existing bonepatch checkpoint file (atomic rewrite)."""
    path = Path(path)
    ckpt = read_checkpoint(path)
    ckpt["bonepatch"]["postprocess"] = postprocess
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(ckpt, tmp)
    os.replace(tmp, path)


def postprocess_of(ckpt: dict) -> dict | None:
    """The stored post-processing choice of a checkpoint dict (None: older checkpoint, none chosen)."""
    return ckpt.get("bonepatch", {}).get("postprocess")


def read_checkpoint(path: str | Path, trust: bool = False) -> dict:
    """The checkpoint dict, loaded with ``weights_only=True`` (no arbitrary code runs).

    ``trust=True`` falls back to full unpickling; only for files you made yourself.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        if not trust:
            raise CheckpointError(
                f"{path}: cannot be loaded safely (weights_only): {str(err).splitlines()[0]}. "
                "If it is truncated, use another checkpoint; if you made it yourself and trust it, "
                "pass trust_checkpoint=true.") from err
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as err2:  # noqa: BLE001 - any failure means: not a readable checkpoint
            raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({err2})") from err2
    if not isinstance(ckpt, dict) or "bonepatch" not in ckpt or "state_dict" not in ckpt:
        raise CheckpointError(f"{path}: not a bonepatch checkpoint (no 'bonepatch' entry); "
                              "train one with `python train.py`")
    info = ckpt["bonepatch"]
    if info.get("format") not in SUPPORTED_FORMATS:
        raise CheckpointError(f"{path}: checkpoint format {info.get('format')} (bonepatch "
                              f"{info.get('version')}) is not supported by bonepatch {__version__}; "
                              f"supported formats: {SUPPORTED_FORMATS}")
    return ckpt


def model_from_checkpoint(ckpt: dict, path: str | Path = "checkpoint") -> tuple[torch.nn.Module, dict]:
    """(model in eval mode on the CPU, resolved run config) from a checkpoint dict (``read_checkpoint``)."""
    config = ckpt["bonepatch"]["config"]
    model_cfg = dict(config["model"])
    model_cfg.pop("init_from", None)  # the weights come from this checkpoint, not from the run's start
    model = instantiate(OmegaConf.create(model_cfg))
    state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit the model of its config "
                              f"({str(err).splitlines()[0]})") from err
    return model.eval(), config


def load_model(path: str | Path, trust: bool = False) -> tuple[torch.nn.Module, dict]:
    """(model in eval mode on the CPU, the run's resolved config dict) from a checkpoint."""
    return model_from_checkpoint(read_checkpoint(path, trust=trust), path)
