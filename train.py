"""Train a bonepatch model: `python train.py experiment=joint` (configs in conf/)."""
import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from bonepatch.train import run  # imported here so `--help` stays fast

    return run(cfg)


if __name__ == "__main__":
    main()
