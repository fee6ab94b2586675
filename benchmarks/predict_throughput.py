"""End-to-end prediction throughput: ``python benchmarks/predict_throughput.py [--ckpt PATH]``.

Writes ``--n`` phantom views (1024x256 16-bit PNG) to a temp folder, then times
``bonepatch.predict.predict`` on them: reading, model, label map, overlay, keypoints, statistics
and writing every output. Without ``--ckpt`` it uses a freshly initialised model of
``conf/model/<--model>.yaml`` (random weights: same cost as a trained one). CPU threads: ``--threads``.
"""
import argparse
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from bonepatch import __version__
from bonepatch.data.phantom import write_dataset
from bonepatch.checkpoint import load_model
from bonepatch.predict import predict

CONF = str(Path(__file__).resolve().parents[1] / "conf")


def fresh_checkpoint(model: str, path: Path) -> Path:
    """A checkpoint of the default config with ``model=<model>`` and random weights."""
    with initialize_config_dir(CONF, version_base="1.3"):
        cfg = compose("train", overrides=[f"model={model}"])
    config = {"model": OmegaConf.to_container(cfg.model, resolve=True),
              "data": OmegaConf.to_container(cfg.data, resolve=True)}
    net = instantiate(OmegaConf.create(config["model"]))
    torch.save({"state_dict": {f"model.{k}": v for k, v in net.state_dict().items()},
                "bonepatch": {"format": 1, "version": __version__, "config": config}}, path)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--ckpt", help="a trained checkpoint (default: a freshly initialised --model)")
    p.add_argument("--model", default="pipeline", help="conf/model/<name>.yaml without --ckpt (default pipeline)")
    p.add_argument("--n", type=int, default=16, help="phantom views to predict (default 16)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tta-flip", action="store_true")
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = Path(a.ckpt) if a.ckpt else fresh_checkpoint(a.model, tmp / "fresh.ckpt")
        write_dataset(tmp / "data", a.n, seed=0)
        images = tmp / "data" / "images"
        t = time.perf_counter()
        model, _ = load_model(ckpt)
        load_s = time.perf_counter() - t
        # refuse_unsure=false: a random model's maps are refused, and the full write path is what is timed
        predict(ckpt, str(next(images.iterdir())), tmp / "warmup", device=a.device, progress=False, refuse_unsure=False)
        t = time.perf_counter()
        rows = predict(ckpt, str(images), tmp / "out", device=a.device, batch_size=a.batch_size,
                       tta_flip=a.tta_flip, progress=False, refuse_unsure=False)
        dt = time.perf_counter() - t - load_s  # predict() loads the model once more
    ok = sum(r["status"] == "ok" for r in rows)
    which = f"checkpoint {a.ckpt}" if a.ckpt else f"freshly initialised model={a.model} (random weights)"
    print(f"{type(model).__name__}, {which}; device {a.device}, {a.threads} threads, batch {a.batch_size}"
          f"{', flip TTA' if a.tta_flip else ''}")
    print(f"{ok}/{len(rows)} views ok: {len(rows) / dt:.2f} views/s ({1000 * dt / len(rows):.0f} ms per 1024x256 view "
          f"incl. reading + writing all outputs; model load {load_s:.1f} s not counted)")


if __name__ == "__main__":
    main()
