"""Segment whole-body bone scans with a trained checkpoint (docs/predict.md).

    python predict.py ckpt=logs/joint/runs/<date>/checkpoints/last.ckpt input=scans/ output=results/

Exit status: 0 every view ok or flagged, 1 some input failed (see summary.csv), 2 nothing ran.
"""
import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    from bonepatch.predict import run  # after Hydra has parsed the command line (fast --help)

    code = run(cfg)
    if code:
        raise SystemExit(code)


if __name__ == "__main__":
    main()
