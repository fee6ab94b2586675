"""The bonepatch checkpoint format: what a run writes into its Lightning checkpoint, and how a
model is loaded back from that file alone (its config travels inside it).

A Lightning checkpoint dict plus ``checkpoint["bonepatch"] = {"format": 1, "version": str,
"config": resolved run config dict}``; the weights are ``state_dict`` entries ``model.*``.
"""
from __future__ import annotations

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


def stamp_checkpoint(checkpoint: dict, config: dict) -> None:
    """Write the bonepatch entry (format, version, resolved run config) into a checkpoint dict."""
    checkpoint["bonepatch"] = {"format": FORMAT, "version": __version__, "config": config}


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


def load_model(path: str | Path, trust: bool = False) -> tuple[torch.nn.Module, dict]:
    """(model in eval mode on the CPU, the run's resolved config dict) from a checkpoint."""
    ckpt = read_checkpoint(path, trust=trust)
    config = ckpt["bonepatch"]["config"]
    model = instantiate(OmegaConf.create(config["model"]))
    state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit the model of its config "
                              f"({str(err).splitlines()[0]})") from err
    return model.eval(), config
