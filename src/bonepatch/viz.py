"""Pictures people look at: scan + coloured regions + keypoints + patch boxes + legend."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .anatomy import CLASSES, KEYPOINTS, PALETTE

_LUT = np.array([PALETTE[c] for c in CLASSES], np.uint8)  # (C, 3)


def to_gray(image: np.ndarray, percentile: float = 99.5) -> np.ndarray:
    """Counts (H, W) -> uint8 (H, W), clipped at the given percentile of the positive counts."""
    image = np.nan_to_num(np.asarray(image, np.float32))
    pos = image[image > 0]
    top = np.percentile(pos, percentile) if pos.size else 1.0
    return (np.clip(image / max(top, 1e-6), 0, 1) * 255).astype(np.uint8)


def colorize(label_map: np.ndarray) -> np.ndarray:
    """Label ids (H, W) -> RGB uint8 (H, W, 3) in the public masks' palette."""
    return _LUT[np.clip(np.asarray(label_map), 0, len(CLASSES) - 1)]


def overlay(image: np.ndarray, label_map: np.ndarray | None = None, keypoints=None, boxes=None,
            alpha: float = 0.45, scale: int = 2, legend: bool = True, title: str | None = None) -> np.ndarray:
    """One view as an RGB picture.

    Args:
        image: (H, W) counts. label_map: (H, W) ids or None.
        keypoints: (K, 2) or (K, 3) x, y[, vis or confidence]; points with a third value <= 0.1
            are drawn hollow. boxes: (R, 4, 2) corners (kornia order) or None.
        scale: integer upscaling so keypoints and text stay legible.

    Returns:
        (H*scale [+ title], W*scale [+ legend], 3) uint8.
    """
    gray = np.repeat(to_gray(image)[..., None], 3, -1).astype(np.float32)
    if label_map is not None:
        lm = np.asarray(label_map)
        col = colorize(lm).astype(np.float32)
        on = (lm > 0)[..., None]
        gray = np.where(on, (1 - alpha) * gray + alpha * col, gray)
    h, w = gray.shape[:2]
    pic = Image.fromarray(gray.astype(np.uint8)).resize((w * scale, h * scale), Image.NEAREST)
    draw = ImageDraw.Draw(pic)
    if boxes is not None:
        for box in np.asarray(boxes, np.float32):
            pts = [tuple(((p + 0.5) * scale).tolist()) for p in box]
            draw.line(pts + [pts[0]], fill=(255, 255, 255), width=1)
    if keypoints is not None:
        kp = np.asarray(keypoints, np.float32)
        for i, p in enumerate(kp):
            x, y = (p[:2] + 0.5) * scale
            solid = p.shape[0] < 3 or p[2] > 0.1
            r = 2 * scale
            draw.ellipse((x - r, y - r, x + r, y + r), outline=(255, 60, 60),
                         fill=(255, 60, 60) if solid else None)
    font = ImageFont.load_default()
    if legend and label_map is not None:
        present = [c for c in range(1, len(CLASSES)) if (np.asarray(label_map) == c).any()]
        panel = Image.new("RGB", (150, pic.height), (20, 20, 20))
        d = ImageDraw.Draw(panel)
        for row, c in enumerate(present):
            y = 8 + row * 16
            d.rectangle((6, y, 18, y + 11), fill=tuple(int(v) for v in _LUT[c]))
            d.text((24, y), CLASSES[c], fill=(230, 230, 230), font=font)
        if keypoints is not None:
            y = 8 + len(present) * 16 + 6
            d.ellipse((7, y + 1, 17, y + 11), fill=(255, 60, 60))
            d.text((24, y), f"keypoints ({len(KEYPOINTS)})", fill=(230, 230, 230), font=font)
        joined = Image.new("RGB", (pic.width + panel.width, pic.height))
        joined.paste(pic, (0, 0))
        joined.paste(panel, (pic.width, 0))
        pic = joined
    if title:
        top = Image.new("RGB", (pic.width, 16), (20, 20, 20))
        ImageDraw.Draw(top).text((4, 2), title, fill=(230, 230, 230), font=font)
        joined = Image.new("RGB", (pic.width, pic.height + 16))
        joined.paste(top, (0, 0))
        joined.paste(pic, (0, 16))
        pic = joined
    return np.asarray(pic)


def montage(pictures: list[np.ndarray], gap: int = 4) -> np.ndarray:
    """Side-by-side montage of RGB pictures (padded to the tallest)."""
    h = max(p.shape[0] for p in pictures)
    cols = []
    for p in pictures:
        pad = np.zeros((h, p.shape[1] + gap, 3), np.uint8)
        pad[: p.shape[0], : p.shape[1]] = p
        cols.append(pad)
    return np.concatenate(cols, 1)


def save_png(picture: np.ndarray, path: str | Path) -> Path:
    """Write an RGB or gray uint8 array as PNG (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture).save(path)
    return path
