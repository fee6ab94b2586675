"""CLI: ``python -m bonepatch.data.phantom --out DIR --n N [--layout folder|bs80k] [--seed S] [--preview FILE.png]``."""
from __future__ import annotations

import argparse
from pathlib import Path

from bonepatch.data.phantom.bs80k_writer import write_bs80k
from bonepatch.data.phantom.config import CONVENTIONS, RIB_LABELS, VIEWS, PhantomConfig
from bonepatch.data.phantom.generate import render
from bonepatch.data.phantom.preview import preview
from bonepatch.data.phantom.writer import write_dataset


def main(argv=None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m bonepatch.data.phantom",
        description="Write a synthetic whole-body bone scan dataset (images, masks, keypoints, "
                    "splits) and/or a preview montage.")
    p.add_argument("--out", type=Path, help="dataset folder to write")
    p.add_argument("--n", type=int, default=8,
                   help="number of views (folder layout) or of acquisitions, each anterior + posterior (bs80k); default 8")
    p.add_argument("--layout", choices=("folder", "bs80k"), default="folder",
                   help="folder: docs/CONTRACTS.md (16-bit PNG counts + keypoints); bs80k: the public BS-80K "
                        "12-region mask layout (OUT/dataset/..., 8-bit scans in OUT/images)")
    p.add_argument("--seed", type=int, default=0, help="random stream (default 0)")
    p.add_argument("--view", choices=VIEWS, default="both", help="views to render (folder layout)")
    p.add_argument("--rib-label", choices=RIB_LABELS, default="region", help="rib label style")
    p.add_argument("--height", type=int, default=1024, help="image rows (default 1024)")
    p.add_argument("--width", type=int, default=256, help="image columns (default 256); the pixel size scales "
                                                           "with 1024/height so the body fits")
    p.add_argument("--image-format", choices=("jpg", "png"), default="jpg", help="bs80k scans: jpg (default) or png")
    p.add_argument("--convention", choices=CONVENTIONS, default="reference",
                   help="label rules: reference (the real maps') or anatomic (phantom v1)")
    p.add_argument("--preview", type=Path, help="also write a montage PNG of the first views")
    a = p.parse_args(argv)
    if a.out is None and a.preview is None:
        p.error("give --out DIR and/or --preview FILE.png")
    cfg = PhantomConfig(view=a.view if a.layout == "folder" else "both", rib_label=a.rib_label,
                        convention=a.convention, height=a.height, width=a.width, mm_per_px=2.4 * 1024 / a.height)
    if a.out is not None:
        if a.layout == "bs80k":
            root = write_bs80k(a.out, a.n, a.seed, cfg, image_format=a.image_format)
            print(f"wrote {root} (masks, splits, class_labels.json) and {a.out / 'images'} (scans): "
                  f"python -m bonepatch.verify data=bs80k data.root={root} data.images={a.out / 'images'}")
        else:
            write_dataset(a.out, a.n, a.seed, cfg)
    if a.preview is not None:
        preview([render(a.seed, i, cfg) for i in range(min(a.n, 8))], a.preview)


if __name__ == "__main__":
    main()
