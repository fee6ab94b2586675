"""Label-map proportions: per class top, bottom, width and area in units of the skull-top to
femur-bottom distance, for reference label maps against phantom masks (the convention check).

    PYTHONPATH=src python benchmarks/label_proportions.py --reference ../shared/data/real/reference --n 20

A map is measured in its own frame: ``L`` = (lowest femur row - highest skull row); ``top`` and
``bot`` = the class's 2nd and 98th percentile rows minus the skull top, over ``L``; ``width`` =
the median row extent (first to last labelled column) over ``L``; ``area`` = pixels / L^2.
Views are told apart by the file name (a ``post`` part = posterior) or the phantom's meta.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bonepatch.anatomy import CLASS_IDS

COLUMNS = ("top", "bot", "width", "area")


def proportions(mask: np.ndarray) -> dict[str, dict[str, float]]:
    """{class name: {top, bot, width, area}} of one (H, W) label map (empty dict if no skull/femur)."""
    sk, fe = np.flatnonzero((mask == CLASS_IDS["skull"]).any(1)), np.flatnonzero((mask == CLASS_IDS["femur"]).any(1))
    if not len(sk) or not len(fe):
        return {}
    y0, ln = sk[0], float(fe[-1] - sk[0])
    out = {}
    for name, c in CLASS_IDS.items():
        if c == 0:
            continue
        ys, xs = np.nonzero(mask == c)
        if len(ys) < 10:
            continue
        rows = np.unique(ys)
        ext = [np.ptp(xs[ys == r]) + 1 for r in rows]
        lo, hi = np.percentile(ys, [2, 98])
        out[name] = {"top": (lo - y0) / ln, "bot": (hi - y0) / ln, "width": float(np.median(ext)) / ln,
                     "area": len(ys) / ln ** 2}
    return out


def median_table(maps: list[dict]) -> dict[str, dict[str, float]]:
    """Per class and column, the median over maps that have the class."""
    names = sorted({n for m in maps for n in m}, key=lambda n: CLASS_IDS[n])
    return {n: {k: float(np.median([m[n][k] for m in maps if n in m])) for k in COLUMNS} for n in names}


def _reference(folder: Path):
    from PIL import Image

    out = {"anterior": [], "posterior": []}
    for p in sorted(folder.glob("*.png")):
        im = Image.open(p)
        if im.mode not in ("L", "P"):
            continue
        out["posterior" if "post" in p.stem.split("_") else "anterior"].append(proportions(np.asarray(im)))
    return out


def _phantom(n: int, seed: int):
    from bonepatch.data.phantom import PhantomConfig, render

    cfg = PhantomConfig(truncate_prob=0, missing_limb_prob=0, child_prob=0)
    out = {"anterior": [], "posterior": []}
    for i in range(n):
        s = render(seed, i, cfg)
        out[s["meta"]["view"]].append(proportions(s["mask"]))
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference", type=Path, required=True, help="folder of reference label PNGs")
    p.add_argument("--n", type=int, default=20, help="phantom views")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    ref, ph = _reference(a.reference), _phantom(a.n, a.seed)
    for view in ("anterior", "posterior"):
        r, q = median_table([m for m in ref[view] if m]), median_table([m for m in ph[view] if m])
        print(f"\n{view}: reference {len(ref[view])} maps | phantom {len(ph[view])} maps (ratio phantom/ref)")
        print(f"{'class':20s}" + "".join(f"{c:>22s}" for c in COLUMNS))
        for n in r:
            cells = []
            for k in COLUMNS:
                a_, b_ = r[n][k], q.get(n, {}).get(k, float("nan"))
                cells.append(f"{a_:7.3f} {b_:7.3f} ({b_ / a_ if a_ else float('nan'):4.2f})")
            print(f"{n:20s}" + "".join(f"{c:>22s}" for c in cells))


if __name__ == "__main__":
    main()
