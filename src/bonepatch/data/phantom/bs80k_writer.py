"""Write phantom scans in the public BS-80K 12-region mask layout (``--layout bs80k``).

::

    OUT/dataset/masks/anterior/Anterior_0001.png       8-bit label ids 0..12
    OUT/dataset/masks/posterior/Posterior_0001.png     (no sternum on posterior views)
    OUT/dataset/masks/{anterior,posterior}_colored/    RGB palette copies (readers ignore them)
    OUT/dataset/splits/{anterior,posterior}/{train,val,test}.txt   one bare numeric id a line
    OUT/dataset/splits/splits_5fold.json   [{"train": ["Anterior_0001", ...], "val": [...]}] x 5
    OUT/dataset/class_labels.json          {"0": "background", ..., "6": "collarbone", ...}
    OUT/images/0001_ant.jpg, 0001_post.jpg  8-bit whole-body scans, bright bone, as BS-80K ships them

Both views of an acquisition share its numeric id and its split (and fold); the scans are
named differently from the masks on purpose, as readers match the two by the numeric id only.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bonepatch.anatomy import CLASSES, PALETTE
from bonepatch.data.phantom.config import PhantomConfig
from bonepatch.data.phantom.generate import render_pair

#: class_labels.json as the public masks name the ids ("collarbone" for the clavicle).
PUBLIC_NAMES = {**{i: n for i, n in enumerate(CLASSES)}, CLASSES.index("clavicle"): "collarbone"}
VIEW_TAGS = {"anterior": ("Anterior", "ant"), "posterior": ("Posterior", "post")}


def to_8bit(counts: np.ndarray, percentile: float = 99.7) -> np.ndarray:
    """(H, W) counts -> uint8 display image (0 = no counts, 255 at the ``percentile``-th count)."""
    top = max(float(np.percentile(counts, percentile)), 1e-6)
    return np.clip(np.rint(counts * (255.0 / top)), 0, 255).astype(np.uint8)


def _colored(mask: np.ndarray) -> np.ndarray:
    lut = np.array([PALETTE[n] for n in CLASSES], np.uint8)  # (C, 3)
    return lut[mask]


def _folds(ids: list[int], k: int, seed: int) -> list[dict]:
    order = np.random.default_rng([seed, 5]).permutation(len(ids))
    parts = [sorted(ids[i] for i in order[j::k]) for j in range(k)]
    names = lambda group: [f"{VIEW_TAGS[v][0]}_{i:04d}" for v in VIEW_TAGS for i in group]  # noqa: E731
    return [{"train": names(sorted(set(ids) - set(parts[j]))), "val": names(parts[j])} for j in range(k)]


def write_bs80k(out_dir, n: int, seed: int = 0, config: PhantomConfig | None = None,
                splits=(0.7, 0.15, 0.15), image_format: str = "jpg", folds: int = 5) -> Path:
    """Write ``n`` acquisitions (ids 1..n, anterior + posterior each) in the BS-80K layout.

    Returns the dataset folder (``OUT/dataset``; the scans go to ``OUT/images``). The 5 folds
    cover the train + val ids (test held out), as nnU-Net's splits do.
    """
    from PIL import Image
    from tqdm import tqdm

    if image_format not in ("jpg", "png"):
        raise ValueError(f"image_format={image_format!r}: choose 'jpg' or 'png'")
    if len(splits) != 3 or min(splits) < 0 or not np.isclose(sum(splits), 1):
        raise ValueError(f"splits must be 3 non-negative fractions summing to 1, got {splits}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    cfg = config or PhantomConfig()
    out = Path(out_dir)
    root, images = out / "dataset", out / "images"
    for view in VIEW_TAGS:
        for sub in (root / "masks" / view, root / "masks" / f"{view}_colored", root / "splits" / view):
            sub.mkdir(parents=True, exist_ok=True)
    images.mkdir(parents=True, exist_ok=True)
    ids = list(range(1, n + 1))
    order = np.random.default_rng([seed, 2**31 - 1]).permutation(n)
    edges = np.round(np.cumsum(splits)[:2] * n).astype(int)
    split_of = dict(zip(ids, np.searchsorted(edges, np.argsort(order), side="right")))
    for i in tqdm(ids, desc="phantom bs80k", unit="scan"):
        for s, view in zip(render_pair(seed, i - 1, cfg), VIEW_TAGS):
            tag, short = VIEW_TAGS[view]
            name = f"{tag}_{i:04d}.png"
            Image.fromarray(s["mask"]).save(root / "masks" / view / name)
            Image.fromarray(_colored(s["mask"])).save(root / "masks" / f"{view}_colored" / name)
            image = Image.fromarray(to_8bit(s["image"]))
            image.save(images / f"{i:04d}_{short}.{image_format}", **({"quality": 92} if image_format == "jpg" else {}))
    lists = {name: [i for i in ids if split_of[i] == k] for k, name in enumerate(("train", "val", "test"))}
    for view in VIEW_TAGS:
        for name, members in lists.items():
            (root / "splits" / view / f"{name}.txt").write_text("".join(f"{i}\n" for i in members))
    pool = lists["train"] + lists["val"]
    if folds and len(pool) >= folds:
        (root / "splits" / "splits_5fold.json").write_text(json.dumps(_folds(pool, folds, seed), indent=1))
    (root / "class_labels.json").write_text(json.dumps({str(k): v for k, v in PUBLIC_NAMES.items()}, indent=1))
    return root
