"""Datasets that yield the sample dict of docs/CONTRACTS.md.

A sample: ``image`` float32 (1, H, W) counts, ``mask`` int64 (H, W) (left out when a folder
case has none), ``keypoints`` float32 (K, 3) x, y, vis, and ``meta`` {case_id, view,
spacing_mm (nan if unknown), source, mirrored (the view was mirrored to the anterior side)}.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from bonepatch.anatomy import (CLASSES, KEYPOINT_IDS, NUM_KEYPOINTS, flip_keypoints, keypoints_from_mask,
                               mirror_to_anterior)
from bonepatch.geometry.resize import resize_counts, resize_labels, scale_points
from bonepatch.data.io import (IMAGE_SUFFIXES, MASK_SUFFIXES, BoneScanInputError, is_dicom_file, probe_views,
                               read_mask, read_views)

#: (image folder, mask folder, image-name suffix to strip, split the folder implies).
_LAYOUTS = (("images", "masks", "", None),  # bonepatch folder layout
            ("imagesTr", "labelsTr", "_0000", "train"),  # nnU-Net raw layout
            ("imagesTs", "labelsTs", "_0000", "test"))


def make_sample(image: np.ndarray, mask: np.ndarray | None, keypoints: np.ndarray, meta: dict) -> dict:
    """The CONTRACTS sample from numpy: image (H, W), mask (H, W) or None, keypoints (K, 3)."""
    sample = {"image": torch.from_numpy(np.ascontiguousarray(image, np.float32))[None],  # (1,H,W)
              "keypoints": torch.from_numpy(np.ascontiguousarray(keypoints, np.float32))}
    if mask is not None:
        sample["mask"] = torch.from_numpy(np.ascontiguousarray(mask, np.int64))
    sample["meta"] = meta
    return sample


def mirror(image: np.ndarray, mask: np.ndarray | None, keypoints: np.ndarray):
    """Left-right mirror of image (H, W), mask (H, W) or None and keypoints (K, 3) (pairs swapped)."""
    return image[:, ::-1], None if mask is None else mask[:, ::-1], flip_keypoints(keypoints, image.shape[1])


def resize_sample(image: np.ndarray, mask: np.ndarray | None, keypoints: np.ndarray,
                  size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Resize to ``size`` (H', W') by the rule of :mod:`bonepatch.geometry.resize` (counts
    preserved, mask nearest, keypoints by pixel centres)."""
    return (resize_counts(image, size), None if mask is None else resize_labels(mask, size),
            scale_points(keypoints, image.shape, size))


class PhantomDataset(Dataset):
    """Procedural bone scans rendered on the fly by ``bonepatch.data.phantom.render``.

    Deterministic per (seed, index): use different seeds for train / val / test.
    ``config``: a ``PhantomConfig``, a dict of its fields, or None (defaults).
    ``mirror_posterior``: mirror posterior views to the anterior orientation (as FolderDataset).
    """

    def __init__(self, seed: int, length: int, config=None, transform: Callable | None = None,
                 mirror_posterior: bool = False):
        from bonepatch.data import phantom

        if length < 1:
            raise ValueError(f"PhantomDataset length must be >= 1, got {length}")
        self.seed, self.length, self.transform, self._render = int(seed), int(length), transform, phantom.render
        self.mirror_posterior = mirror_posterior
        self.config = phantom.PhantomConfig(**dict(config)) if isinstance(config, Mapping) else config

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for a PhantomDataset of length {self.length}")
        out = self._render(self.seed, index, self.config)
        meta = out.get("meta", {})
        view = str(meta.get("view", "anterior"))
        mirrored = mirror_to_anterior(view, True, self.mirror_posterior)  # rendered as seen from behind
        image, mask, kp = (mirror(out["image"], out["mask"], out["keypoints"]) if mirrored else
                           (out["image"], out["mask"], out["keypoints"]))
        sample = make_sample(image, mask, kp, {
            "case_id": str(meta.get("case_id", f"phantom_{self.seed}_{index:06d}")), "view": view,
            "spacing_mm": float(meta.get("spacing_mm", math.nan)), "source": "phantom", "mirrored": mirrored})
        return self.transform(sample) if self.transform else sample


@dataclass(frozen=True)
class _Case:
    case_id: str
    stem: str  # the image's case id before a frame's view is appended
    image: Path
    frame: int
    mask: Path | None
    keypoints: Path | None
    group: str | None  # the split its nnU-Net folder implies


def _find(folder: Path, name: str, suffixes) -> Path | None:
    return next((p for p in (folder / (name + s) for s in suffixes) if p.is_file()), None)


class FolderDataset(Dataset):
    """Scans on disk: ``root/images`` + ``masks`` (+ ``keypoints``) or the nnU-Net raw layout.

    Args:
        root: dataset folder (docs/CONTRACTS.md layout, or imagesTr/labelsTr/imagesTs).
        split: a split name: cases listed in ``root/<split>.txt`` (case ids, or a two-frame
            DICOM's stem for both its views); without a list, nnU-Net's "train" = imagesTr and
            "test" = imagesTs. None = every case.
        mirror_posterior: mirror posterior views stored mirrored (``ScanView.flipped``) to the
            anterior orientation: image, mask and keypoints (pairs swapped).
        require_masks: every image needs a mask (training); False for prediction.
        size: (H, W) to resize every sample to, or None.
        force_dicom: read non-NM DICOMs too.
        cache_dir: where keypoints derived from masks are cached (default ``root/.bonepatch_cache``;
            a read-only folder just keeps them in memory).
    """

    def __init__(self, root, split: str | None = None, mirror_posterior: bool = False,
                 require_masks: bool = True, size: tuple[int, int] | None = None,
                 force_dicom: bool = False, transform: Callable | None = None, cache_dir=None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise BoneScanInputError(f"{self.root}: dataset root is not a folder; check the path")
        if size is not None and (len(size) != 2 or min(size) < 1):
            raise ValueError(f"size must be (H, W) with positive ints, got {size}")
        self.mirror_posterior, self.size, self.force_dicom = mirror_posterior, size and tuple(size), force_dicom
        self.transform = transform
        self.cache_dir = Path(cache_dir) if cache_dir else self.root / ".bonepatch_cache"
        self._kp_cache: dict[tuple[str, int], np.ndarray] = {}
        self._check_label_names()
        self.cases = self._select(self._discover(), split)
        missing = [c for c in self.cases if c.mask is None]
        if require_masks and missing:
            raise BoneScanInputError(
                f"{self.root}: {len(missing)} image(s) have no mask, e.g. "
                f"{', '.join(str(c.image) for c in missing[:3])} (looked for <mask folder>/<case id>"
                f"{{{','.join(MASK_SUFFIXES)}}}, e.g. {missing[0].case_id}.png); add the masks or pass "
                "require_masks=False (prediction)")

    def _check_label_names(self):
        """Warn when an nnU-Net dataset.json numbers the classes differently from anatomy.CLASSES."""
        meta = self.root / "dataset.json"
        labels = json.loads(meta.read_text()).get("labels", {}) if meta.is_file() else {}
        wrong = {k: v for k, v in labels.items() if k in CLASSES and CLASSES.index(k) != v}
        if wrong or any(not isinstance(v, int) or v >= len(CLASSES) for v in labels.values()):
            warnings.warn(f"{meta}: labels {labels} differ from bonepatch.anatomy.CLASSES "
                          f"{dict(enumerate(CLASSES))}; remap the masks or expect wrong classes")

    def _discover(self) -> list[_Case]:
        cases, searched = [], []
        for image_dir, mask_dir, strip, group in _LAYOUTS:
            folder = self.root / image_dir
            searched.append(f"{folder}/*{strip}{{{','.join(IMAGE_SUFFIXES)}}}")
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                readable = path.suffix.lower() in IMAGE_SUFFIXES or (path.suffix == "" and is_dicom_file(path))
                if path.name.startswith(".") or not path.is_file() or not readable or not path.stem.endswith(strip):
                    continue
                stem = path.stem[:len(path.stem) - len(strip)]
                views = probe_views(path, self.force_dicom)
                ids = [stem] if len(views) == 1 else (
                    [f"{stem}_{v}" for v in views] if len(set(views)) == len(views) and "unknown" not in views
                    else [f"{stem}_frame{i}" for i in range(len(views))])
                cases += [_Case(cid, stem, path, i, _find(self.root / mask_dir, cid, MASK_SUFFIXES),
                                _find(self.root / "keypoints", cid, (".json",)), group) for i, cid in enumerate(ids)]
        if not cases:
            raise BoneScanInputError(f"{self.root}: no images found; searched {'; '.join(searched)}. "
                                     "Put the scans in images/ (masks in masks/) or use the nnU-Net layout")
        seen = {}
        for c in cases:
            if c.case_id in seen:
                raise BoneScanInputError(f"{c.image}: case id {c.case_id!r} also used by {seen[c.case_id]}; "
                                         "give every scan a unique file name")
            seen[c.case_id] = c.image
        return cases

    def _select(self, cases: list[_Case], split: str | None) -> list[_Case]:
        if split is None:
            return cases
        listing = self.root / f"{split}.txt"
        if listing.is_file():
            wanted = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
            known = {c.case_id for c in cases} | {c.stem for c in cases}
            unknown = [w for w in wanted if w not in known]
            if unknown:
                raise BoneScanInputError(f"{listing}: case ids {unknown[:5]} match no image; "
                                         f"known ids are e.g. {sorted(known)[:5]}")
            wanted = set(wanted)
            return [c for c in cases if c.case_id in wanted or c.stem in wanted]
        chosen = [c for c in cases if c.group == split]
        if not chosen:
            raise BoneScanInputError(f"{listing}: split list not found (and no nnU-Net folder implies split "
                                     f"{split!r}); write one case id per line or pass split=None")
        return chosen

    def __len__(self) -> int:
        return len(self.cases)

    def _derived_keypoints(self, mask_path: Path, mask: np.ndarray) -> np.ndarray:
        """keypoints_from_mask(mask), cached in memory and on disk by mask path + mtime."""
        key = (str(mask_path.resolve()), mask_path.stat().st_mtime_ns)
        if key not in self._kp_cache:
            file = self.cache_dir / f"kp_{hashlib.sha1(repr(key).encode()).hexdigest()[:20]}.npy"
            try:
                self._kp_cache[key] = np.load(file)
            except (OSError, ValueError):
                self._kp_cache[key] = keypoints_from_mask(mask)
                try:  # atomic write; a read-only root keeps the memory cache only
                    self.cache_dir.mkdir(parents=True, exist_ok=True)
                    tmp = file.with_suffix(f".{os.getpid()}.tmp")
                    with open(tmp, "wb") as fh:
                        np.save(fh, self._kp_cache[key])
                    os.replace(tmp, file)
                except OSError:
                    pass
        return self._kp_cache[key].copy()

    @staticmethod
    def _read_keypoints(path: Path) -> tuple[np.ndarray, dict]:
        """(K, 3) keypoints from a CONTRACTS keypoints JSON (reordered by "names" if given), and the JSON."""
        try:
            data = json.loads(path.read_text())
            kp = np.asarray(data["keypoints"], np.float32)
            names = data.get("names")
            if names is not None:
                ordered = np.zeros((NUM_KEYPOINTS, 3), np.float32)
                ordered[[KEYPOINT_IDS[n] for n in names]] = kp
                kp = ordered
            if kp.shape != (NUM_KEYPOINTS, 3):
                raise ValueError(f"keypoints have shape {kp.shape}, expected ({NUM_KEYPOINTS}, 3)")
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise BoneScanInputError(f"{path}: not a valid keypoints JSON ({err}); write "
                                     '{"keypoints": [[x, y, vis] x 16], "names": [...]}') from err
        return kp, data

    def __getitem__(self, index: int) -> dict:
        case = self.cases[index]
        scan = read_views(case.image, self.force_dicom)[case.frame]
        image = scan.image
        mask = read_mask(case.mask, image.shape) if case.mask else None
        info = {}
        if case.keypoints:
            kp, info = self._read_keypoints(case.keypoints)
        elif mask is not None:
            kp = self._derived_keypoints(case.mask, mask)
        else:
            kp = np.zeros((NUM_KEYPOINTS, 3), np.float32)  # unknown: all invisible
        view = scan.view if scan.view != "unknown" else str(info.get("view", "unknown"))
        spacing = scan.spacing_mm or info.get("spacing_mm") or math.nan
        # a view named only by its keypoints file is assumed stored as displayed (posterior mirrored)
        mirrored = mirror_to_anterior(view, scan.flipped or scan.view == "unknown", self.mirror_posterior)
        if mirrored:
            image, mask, kp = mirror(image, mask, kp)
        if self.size and self.size != image.shape:
            spacing = spacing * image.shape[0] / self.size[0]
            image, mask, kp = resize_sample(image, mask, kp, self.size)
        sample = make_sample(image, mask, kp, {"case_id": case.case_id, "view": view, "spacing_mm": float(spacing),
                                               "source": str(case.image), "mirrored": bool(mirrored)})
        return self.transform(sample) if self.transform else sample
