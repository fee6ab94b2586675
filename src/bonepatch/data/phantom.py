"""Procedural whole-body bone scan phantom (99mTc-MDP, anterior + posterior planar views).

Each sample is one view: ``{"image": (H, W) float32 counts, "mask": (H, W) uint8 label ids of
bonepatch.anatomy.CLASSES, "keypoints": (16, 3) float32 x, y, vis, "meta": {...}}``,
deterministic per ``(seed, index)``. With ``view="both"`` index ``2k`` is subject ``k``
anterior and ``2k + 1`` the same subject posterior. See docs/phantom.md for what is modelled.

>>> s = render(0, 0, PhantomConfig())
>>> s["image"].shape, s["mask"].dtype, s["keypoints"].shape, s["meta"]["view"]
((1024, 256), dtype('uint8'), (16, 3), 'anterior')

CLI: ``python -m bonepatch.data.phantom --out DIR --n N [--seed S] [--preview FILE.png]``.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bonepatch.anatomy import KEYPOINTS
from bonepatch.data.phantom_render import render_view
from bonepatch.data.phantom_subject import sample_subject

_VIEWS = ("both", "anterior", "posterior")
_RIB_LABELS = ("region", "arcs")


@dataclass
class PhantomConfig:
    """Phantom settings (plain types, all defaulted, so Hydra can instantiate it).

    Probabilities are per subject; ranges are ``(min, max)``; ``counts_range`` is the total
    counts of one view (log-uniform), ``fwhm_mm_range`` the collimator blur.
    """

    height: int = 1024
    width: int = 256
    mm_per_px: float = 2.4
    view: str = "both"
    rib_label: str = "region"
    height_cm_range: tuple = (150.0, 195.0)
    child_prob: float = 0.08
    truncate_prob: float = 0.08
    missing_limb_prob: float = 0.03
    scoliosis_prob: float = 0.12
    superscan_prob: float = 0.03
    lesion_prob: float = 0.35
    max_lesions: int = 15
    artefact_prob: float = 0.25
    counts_range: tuple = (3e5, 3e6)
    fwhm_mm_range: tuple = (7.0, 12.0)

    def __post_init__(self):
        for name, options in (("view", _VIEWS), ("rib_label", _RIB_LABELS)):
            if getattr(self, name) not in options:
                raise ValueError(f"PhantomConfig.{name}={getattr(self, name)!r}; choose one of {options}")
        if self.height % 2 or self.width % 2 or self.height < 64 or self.width < 32:
            raise ValueError(f"PhantomConfig.height/width must be even and >= 64/32, got "
                             f"{self.height}x{self.width}")
        for name in ("height_cm_range", "counts_range", "fwhm_mm_range"):
            lo, hi = (float(v) for v in getattr(self, name))  # Hydra passes lists
            if not 0 < lo <= hi:
                raise ValueError(f"PhantomConfig.{name} must be (min, max) with 0 < min <= max")
            setattr(self, name, (lo, hi))
        for name in ("child_prob", "truncate_prob", "missing_limb_prob", "scoliosis_prob",
                     "superscan_prob", "lesion_prob", "artefact_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"PhantomConfig.{name} must lie in [0, 1]")
        if self.max_lesions < 0 or self.mm_per_px <= 0:
            raise ValueError("PhantomConfig.max_lesions must be >= 0 and mm_per_px > 0")


def _sample(seed: int, index: int, subject: int, view: str, cfg: PhantomConfig) -> dict:
    image, mask, kp = render_view(sample_subject(seed, subject, cfg), view, cfg)
    return {"image": image, "mask": mask, "keypoints": kp,
            "meta": {"case_id": f"phantom_{seed}_{index:06d}", "view": view,
                     "spacing_mm": float(cfg.mm_per_px), "source": "phantom"}}


def render(seed: int, index: int, config: PhantomConfig | None = None) -> dict:
    """Sample ``index`` of stream ``seed`` (one view; see the module docstring)."""
    cfg = config or PhantomConfig()
    if cfg.view == "both":
        return _sample(seed, index, index // 2, ("anterior", "posterior")[index % 2], cfg)
    return _sample(seed, index, index, cfg.view, cfg)


def render_pair(seed: int, subject: int, config: PhantomConfig | None = None) -> tuple[dict, dict]:
    """Anterior and posterior views of one subject (case ids of the ``view="both"`` stream)."""
    cfg = config or PhantomConfig()
    return (_sample(seed, 2 * subject, subject, "anterior", cfg),
            _sample(seed, 2 * subject + 1, subject, "posterior", cfg))


def write_dataset(out_dir, n: int, seed: int = 0, config: PhantomConfig | None = None,
                  splits=(0.8, 0.1, 0.1)) -> None:
    """Write ``n`` views in the folder layout of docs/CONTRACTS.md.

    Images are 16-bit PNG counts (clipped to 65535), masks 8-bit PNG, keypoints one JSON per
    case, and train/val/test.txt. Both views of a subject go to the same split.
    """
    from PIL import Image
    from tqdm import tqdm

    if len(splits) != 3 or min(splits) < 0 or not np.isclose(sum(splits), 1):
        raise ValueError(f"splits must be 3 non-negative fractions summing to 1, got {splits}")
    cfg = config or PhantomConfig()
    out = Path(out_dir)
    for sub in ("images", "masks", "keypoints"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    per_subject = 2 if cfg.view == "both" else 1
    n_subj = -(-n // per_subject)
    order = np.random.default_rng([seed, 2**31 - 1]).permutation(n_subj)
    edges = np.round(np.cumsum(splits)[:2] * n_subj).astype(int)
    split_of = np.searchsorted(edges, np.argsort(order), side="right")
    lists = {"train": [], "val": [], "test": []}
    for i in tqdm(range(n), desc="phantom", unit="view"):
        s = render(seed, i, cfg)
        case = s["meta"]["case_id"]
        counts = np.clip(np.rint(s["image"]), 0, 65535).astype(np.uint16)
        Image.fromarray(counts).save(out / "images" / f"{case}.png")
        Image.fromarray(s["mask"]).save(out / "masks" / f"{case}.png")
        (out / "keypoints" / f"{case}.json").write_text(json.dumps(
            {"keypoints": s["keypoints"].tolist(), "names": list(KEYPOINTS),
             "view": s["meta"]["view"], "spacing_mm": s["meta"]["spacing_mm"]}))
        lists[("train", "val", "test")[split_of[i // per_subject]]].append(case)
    for name, cases in lists.items():
        (out / f"{name}.txt").write_text("".join(c + "\n" for c in cases))


def preview(samples, path) -> None:
    """Montage PNG: images (top row, 99.5th-percentile scaled, inverted) and mask overlays
    with keypoints (bottom row) of a list of samples."""
    from bonepatch.data.phantom_preview import montage

    montage(samples, path)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m bonepatch.data.phantom",
        description="Write a synthetic whole-body bone scan dataset (images, masks, keypoints, "
                    "splits) and/or a preview montage.")
    p.add_argument("--out", type=Path, help="dataset folder to write (layout of docs/CONTRACTS.md)")
    p.add_argument("--n", type=int, default=8, help="number of views (default 8)")
    p.add_argument("--seed", type=int, default=0, help="random stream (default 0)")
    p.add_argument("--view", choices=_VIEWS, default="both", help="views to render")
    p.add_argument("--rib-label", choices=_RIB_LABELS, default="region", help="rib label style")
    p.add_argument("--preview", type=Path, help="also write a montage PNG of the first views")
    a = p.parse_args(argv)
    if a.out is None and a.preview is None:
        p.error("give --out DIR and/or --preview FILE.png")
    cfg = PhantomConfig(view=a.view, rib_label=a.rib_label)
    if a.out is not None:
        write_dataset(a.out, a.n, a.seed, cfg)
    if a.preview is not None:
        preview([render(a.seed, i, cfg) for i in range(min(a.n, 8))], a.preview)


if __name__ == "__main__":
    main()
