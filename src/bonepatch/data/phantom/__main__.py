"""CLI: ``python -m bonepatch.data.phantom --out DIR --n N [--seed S] [--preview FILE.png]``."""
from __future__ import annotations

import argparse
from pathlib import Path

from bonepatch.data.phantom.config import CONVENTIONS, RIB_LABELS, VIEWS, PhantomConfig
from bonepatch.data.phantom.generate import render
from bonepatch.data.phantom.preview import preview
from bonepatch.data.phantom.writer import write_dataset


def main(argv=None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m bonepatch.data.phantom",
        description="Write a synthetic whole-body bone scan dataset (images, masks, keypoints, "
                    "splits) and/or a preview montage.")
    p.add_argument("--out", type=Path, help="dataset folder to write (layout of docs/CONTRACTS.md)")
    p.add_argument("--n", type=int, default=8, help="number of views (default 8)")
    p.add_argument("--seed", type=int, default=0, help="random stream (default 0)")
    p.add_argument("--view", choices=VIEWS, default="both", help="views to render")
    p.add_argument("--rib-label", choices=RIB_LABELS, default="region", help="rib label style")
    p.add_argument("--convention", choices=CONVENTIONS, default="reference",
                   help="label rules: reference (the real maps') or anatomic (phantom v1)")
    p.add_argument("--preview", type=Path, help="also write a montage PNG of the first views")
    a = p.parse_args(argv)
    if a.out is None and a.preview is None:
        p.error("give --out DIR and/or --preview FILE.png")
    cfg = PhantomConfig(view=a.view, rib_label=a.rib_label, convention=a.convention)
    if a.out is not None:
        write_dataset(a.out, a.n, a.seed, cfg)
    if a.preview is not None:
        preview([render(a.seed, i, cfg) for i in range(min(a.n, 8))], a.preview)


if __name__ == "__main__":
    main()
