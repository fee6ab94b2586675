"""The bonepatch checkpoint format: what a run writes into its Lightning checkpoint, and how a
model is loaded back from that file alone (its config travels inside it).

A Lightning checkpoint dict plus ``checkpoint["bonepatch"] = {"format": 1, "version": str,
"config": resolved run config dict}`` and optionally ``"postprocess": {"largest_component": [class
names], ...}`` (``bonepatch.postprocess``: chosen on validation after training; absent = no
post-processing); the weights are ``state_dict`` entries ``model.*``.

A *weights file* (``export_weights``; the default weights shipped in ``bonepatch/weights/``) is the
same dict without the optimiser and trainer state, its floating tensors in half precision:
everything that reads a checkpoint reads it. ``ckpt=default`` / ``model.init_from=default`` name
the shipped file (``resolve_checkpoint``).

    python -m bonepatch.checkpoint export CKPT OUT.pt     # strip a run's checkpoint to weights
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
MODEL_PREFIX = "model."  # the LightningModule holds the torch model as ``self.model``
SUPPORTED_FORMATS = (1,)
#: The weights shipped with the package (``ckpt=default``); see docs/model_card.md.
DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "default.pt"


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

    ``trust=True`` falls back to full unpickling; only for files you made yourself. ``path``
    ``default`` is the shipped weights (``resolve_checkpoint``).
    """
    path = resolve_checkpoint(path)
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


def model_state(ckpt: dict) -> dict[str, torch.Tensor]:
    """The model's tensors of a Lightning / bonepatch checkpoint dict: its ``model.*`` entries,
    prefix removed (the keys of ``model.state_dict()``)."""
    return {k[len(MODEL_PREFIX):]: v for k, v in ckpt["state_dict"].items() if k.startswith(MODEL_PREFIX)}


def model_from_checkpoint(ckpt: dict, path: str | Path = "checkpoint") -> tuple[torch.nn.Module, dict]:
    """(model in eval mode on the CPU, resolved run config) from a checkpoint dict (``read_checkpoint``)."""
    config = ckpt["bonepatch"]["config"]
    model_cfg = dict(config["model"])
    model_cfg.pop("init_from", None)  # the weights come from this checkpoint, not from the run's start
    model = instantiate(OmegaConf.create(model_cfg))
    state = model_state(ckpt)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit the model of its config "
                              f"({str(err).splitlines()[0]})") from err
    return model.eval(), config


def load_model(path: str | Path, trust: bool = False) -> tuple[torch.nn.Module, dict]:
    """(model in eval mode on the CPU, the run's resolved config dict) from a checkpoint."""
    return model_from_checkpoint(read_checkpoint(path, trust=trust), path)


def resolve_checkpoint(spec) -> Path:
    """The file that ``ckpt=`` / ``model.init_from=`` names: None or ``default`` is the package's
    shipped weights (``DEFAULT_WEIGHTS``), anything else a path."""
    if spec is None or str(spec) == "default":
        if not DEFAULT_WEIGHTS.is_file():
            raise CheckpointError(f"this install has no default weights ({DEFAULT_WEIGHTS} is missing); "
                                  "reinstall bonepatch, or train a model (python train.py experiment=joint) "
                                  "and pass ckpt=PATH")
        return DEFAULT_WEIGHTS
    return Path(str(spec)).expanduser()


def export_weights(source: str | Path, out: str | Path, half: bool = True) -> Path:
    """Write the model weights of checkpoint ``source`` (+ its bonepatch entry) to ``out``: no
    optimiser, no trainer state, floating tensors in float16 unless ``half=False``. The model is
    loaded back in float32 by ``load_model`` (and ``weights_only=True`` reads it)."""
    ckpt = read_checkpoint(source)
    info = dict(ckpt["bonepatch"])
    config = dict(info["config"])
    config["model"] = {k: v for k, v in dict(config["model"]).items() if k != "init_from"}
    info.update(config=config, weights_of=Path(source).name, dtype="float16" if half else "float32")
    state = {MODEL_PREFIX + k: (v.half() if half and v.is_floating_point() else v).contiguous()
             for k, v in model_state(ckpt).items()}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    torch.save({"bonepatch": info, "state_dict": state}, tmp)
    os.replace(tmp, out)
    return out


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m bonepatch.checkpoint",
                                description="Checkpoint tools: export a run's checkpoint as a weights file.")
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export", help="model weights + config only, float16 (the shipped-weights format)")
    e.add_argument("ckpt", type=Path)
    e.add_argument("out", type=Path)
    e.add_argument("--float32", action="store_true", help="keep float32 tensors")
    a = p.parse_args(argv)
    try:
        out = export_weights(a.ckpt, a.out, half=not a.float32)
    except CheckpointError as err:
        p.exit(2, f"error: {err}\n")
    print(f"{out}: {out.stat().st_size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
