"""Realism statistics of the phantom against real scans (definitions: benchmarks/realism_stats.py).

    PYTHONPATH=src python benchmarks/phantom_realism.py --n 40 \
        --real ../shared/data/real/bs80k_*.jpg [--as-8bit] [--seed 0] [--set counts_range=[2e5,8e5]]

Renders ``--n`` phantom views (default PhantomConfig, ``--set`` overrides fields), reads the real
images (JPG/PNG/DICOM/NPY via ``bonepatch.data.io.read_views``), and prints per statistic the
phantom median, the real median and their ratio, flagging statistics outside 15% (slope: outside
0.3). ``--as-8bit`` maps each phantom view like the BS-80K JPG exports before measuring.
"""
from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from realism_stats import STATS, as_8bit, image_stats  # noqa: E402

TOLERANCE = 0.15
SLOPE_TOLERANCE = 0.3


def _phantom_images(n: int, seed: int, sets: list[str], eight_bit: bool):
    from bonepatch.data.phantom import PhantomConfig, render

    kw = {}
    for s in sets:
        key, _, value = s.partition("=")
        try:
            kw[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            kw[key] = value
    cfg = PhantomConfig(**kw)
    for i in range(n):
        im = render(seed, i, cfg)["image"]
        yield as_8bit(im) if eight_bit else im


def _real_images(paths):
    from bonepatch.data.io import read_views

    for p in paths:
        for v in read_views(p):
            yield Path(p).name + ("" if v.frame in (0, None) else f"[{v.frame}]"), v.image


def compare(phantom: list[dict], real: list[dict]) -> list[dict]:
    """Rows (stat, phantom median, real median, ratio, ok) of two lists of image_stats dicts."""
    rows = []
    for k in STATS:
        a = float(np.nanmedian([r[k] for r in phantom])) if phantom else float("nan")
        b = float(np.nanmedian([r[k] for r in real])) if real else float("nan")
        ratio = a / b if b else float("nan")
        ok = abs(a - b) <= SLOPE_TOLERANCE if k == "slope" else abs(ratio - 1) <= TOLERANCE
        rows.append({"stat": k, "phantom": a, "real": b, "ratio": ratio, "ok": bool(ok)})
    return rows


def format_table(rows: list[dict]) -> str:
    """Markdown table of :func:`compare` rows."""
    lines = ["| statistic | phantom | real | ratio | within target |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['stat']} | {r['phantom']:.4g} | {r['real']:.4g} | {r['ratio']:.3f} | "
                     f"{'yes' if r['ok'] else '**no**'} |")
    return "\n".join(lines)


def write_montage(real: list, phantom: list, path: Path, rows: tuple[int, int] | None = None) -> None:
    """PNG: real views (left) | phantom views (right), each scaled to its own 99.5th percentile
    of body pixels (the same display for both), bone bright on black; ``rows`` crops (y0, y1)."""
    from PIL import Image

    from realism_stats import body_mask

    cols = []
    for im in list(real) + list(phantom):
        im = np.asarray(im, np.float64)
        b = body_mask(im)
        top = np.percentile(im[b], 99.5) if b.any() else max(im.max(), 1e-6)
        g = np.clip(im / top, 0, 1)
        cols.append(g if rows is None else g[rows[0]:rows[1]])
    h = max(c.shape[0] for c in cols)
    gap = np.full((h, 6), 0.5)
    parts = []
    for i, c in enumerate(cols):
        if i == len(real) and real:
            parts.append(np.full((h, 16), 1.0))  # white bar between real and phantom
        parts += [np.pad(c, ((0, h - c.shape[0]), (0, 0))), gap]
    Image.fromarray((np.concatenate(parts, 1) * 255).astype(np.uint8)).save(path)


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=40, help="phantom views (default 40)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--real", nargs="*", default=[], help="real images (JPG/PNG/DICOM/NPY)")
    p.add_argument("--as-8bit", action="store_true", help="map phantom views like BS-80K JPG exports")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="PhantomConfig override (Python literal), repeatable")
    p.add_argument("--per-image", action="store_true", help="also print every real image's stats")
    p.add_argument("--json", type=Path, help="write the rows as JSON here")
    p.add_argument("--montage", type=Path, help="write a real | phantom PNG (first 4 phantom views)")
    p.add_argument("--montage-rows", type=int, nargs=2, metavar=("Y0", "Y1"), help="crop the montage")
    a = p.parse_args(argv)
    ph_images = list(_phantom_images(a.n, a.seed, a.set, a.as_8bit))
    ph = [image_stats(im) for im in ph_images]
    real, real_images = [], []
    for name, im in _real_images(a.real):
        real.append(image_stats(im))
        real_images.append(im)
        if a.per_image:
            print(name, " ".join(f"{k}={v:.4g}" for k, v in real[-1].items()))
    rows = compare(ph, real)
    print(f"phantom: {a.n} views (seed {a.seed}{', as 8-bit' if a.as_8bit else ''}); real: {len(real)} views")
    print(format_table(rows))
    for k, v in STATS.items():
        print(f"  {k}: {v}")
    if a.montage:
        write_montage(real_images, ph_images[:4], a.montage, a.montage_rows)
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
