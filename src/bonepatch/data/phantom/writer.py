"""Write phantom views to disk as a dataset (the folder layout of docs/CONTRACTS.md)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bonepatch.anatomy import KEYPOINTS
from bonepatch.data.phantom.config import PhantomConfig
from bonepatch.data.phantom.generate import render


def write_dataset(out_dir, n: int, seed: int = 0, config: PhantomConfig | None = None,
                  splits=(0.8, 0.1, 0.1)) -> None:
    """Write ``n`` views in the folder layout of docs/CONTRACTS.md.

    Images are 16-bit PNG counts (clipped to 65535), masks 8-bit PNG, hotspot masks 8-bit PNG
    in ``masks_hotspot/`` (0 none, 1 lesion, 2 degenerative, 3 artefact / bladder), keypoints
    one JSON per case, and train/val/test.txt. Both views of a subject go to the same split.
    """
    from PIL import Image
    from tqdm import tqdm

    if len(splits) != 3 or min(splits) < 0 or not np.isclose(sum(splits), 1):
        raise ValueError(f"splits must be 3 non-negative fractions summing to 1, got {splits}")
    cfg = config or PhantomConfig()
    out = Path(out_dir)
    for sub in ("images", "masks", "masks_hotspot", "keypoints"):
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
        Image.fromarray(s["hotspots"]).save(out / "masks_hotspot" / f"{case}.png")
        (out / "keypoints" / f"{case}.json").write_text(json.dumps(
            {"keypoints": s["keypoints"].tolist(), "names": list(KEYPOINTS),
             "view": s["meta"]["view"], "spacing_mm": s["meta"]["spacing_mm"]}))
        lists[("train", "val", "test")[split_of[i // per_subject]]].append(case)
    for name, cases in lists.items():
        (out / f"{name}.txt").write_text("".join(c + "\n" for c in cases))
