"""Montage of phantom (or any) samples: scan row and mask-overlay row with keypoints."""
from __future__ import annotations

import numpy as np

from bonepatch.anatomy import CLASSES, PALETTE


def scan_gray(image: np.ndarray, pct: float = 99.5) -> np.ndarray:
    """(H, W) counts -> (H, W) float in [0, 1], dark bone on white (clinical display)."""
    top = max(float(np.percentile(image, pct)), 1e-6)
    return 1 - np.clip(image / top, 0, 1)


def montage(samples, path) -> None:
    """Write a PNG: one column per sample, its scan above, mask overlay + keypoints below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lut = np.array([PALETTE[c] for c in CLASSES], np.float32) / 255
    n = len(samples)
    fig, axes = plt.subplots(2, n, figsize=(1.6 * n, 12.4), squeeze=False)
    for j, s in enumerate(samples):
        g = scan_gray(np.asarray(s["image"], np.float32))
        m = np.asarray(s["mask"]).astype(int)
        axes[0, j].imshow(g, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        over = np.where((m > 0)[..., None], 0.45 * np.repeat(g[..., None], 3, 2) + 0.55 * lut[m],
                        np.repeat(g[..., None], 3, 2))
        axes[1, j].imshow(over, interpolation="nearest")
        kp = np.asarray(s["keypoints"])
        vis = kp[:, 2] > 0
        axes[1, j].scatter(kp[vis, 0], kp[vis, 1], s=6, c="red", marker="x", linewidths=0.8)
        meta = s.get("meta", {})
        axes[0, j].set_title(f"{meta.get('case_id', j)}\n{meta.get('view', '')}", fontsize=6)
        for ax in axes[:, j]:
            ax.set_axis_off()
    fig.subplots_adjust(0.01, 0.01, 0.99, 0.97, 0.04, 0.02)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def preview(samples, path) -> None:
    """Montage PNG: images (top row, 99.5th-percentile scaled, inverted) and mask overlays
    with keypoints (bottom row) of a list of samples."""
    montage(samples, path)
