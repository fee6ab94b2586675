"""``data=bs80k``: the public BS-80K 12-region masks read as they ship (layout: ``bs80k_layout``).

``BS80KDataModule`` indexes the layout once, refuses a dataset with structural problems (names,
pairing, split lists, folds, leakage, class names: all listed at once), and builds the train / val
/ test datasets from the split lists (``fold=None``) or from cross-validation fold ``fold``
(train / val from the shipped splits_5fold.json, else a seeded split written to ``folds_out``;
test from the test lists when there are any).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from bonepatch.anatomy import mirror_to_anterior
from bonepatch.data.bs80k_layout import Case, Layout
from bonepatch.data.bs80k_splits import split_cases
from bonepatch.data.datamodule import BoneScanDataModule
from bonepatch.data.dataset import FolderDataset, make_sample, mirror, resize_sample
from bonepatch.data.io import read_mask, read_views


class BS80KDataset(Dataset):
    """Labelled BS-80K views (``Case``: view, numeric id, mask, scan) as CONTRACTS samples.

    Keypoints come from the masks (``anatomy.keypoints_from_mask``, cached under
    ``cache_dir``). Posterior scans are stored as seen from behind (as BS-80K ships them);
    ``mirror_posterior`` mirrors them to the anterior orientation (``anatomy.mirror_to_anterior``).
    ``meta.case_id`` is the fold file's case name (``Anterior_0945``).
    """

    _derived_keypoints = FolderDataset._derived_keypoints  # the same mask -> keypoints cache

    def __init__(self, cases: list[Case], mirror_posterior: bool = False, size: tuple[int, int] | None = None,
                 transform: Callable | None = None, cache_dir=None, split: str | None = None):
        if size is not None and (len(size) != 2 or min(size) < 1):
            raise ValueError(f"size must be (H, W) with positive ints, got {size}")
        self.cases, self.split = list(cases), split
        self.mirror_posterior, self.size, self.transform = mirror_posterior, size and tuple(size), transform
        root = Path(self.cases[0].mask).parents[2] if self.cases else Path(".")
        self.cache_dir = Path(cache_dir) if cache_dir else root / ".bonepatch_cache"
        self._kp_cache: dict = {}

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, index: int) -> dict:
        case = self.cases[index]
        image = read_views(case.image, check_body=False)[0].image  # verify checked the files
        mask = read_mask(case.mask, image.shape)
        kp = self._derived_keypoints(case.mask, mask)
        spacing = math.nan
        mirrored = mirror_to_anterior(case.view, True, self.mirror_posterior)
        if mirrored:
            image, mask, kp = mirror(image, mask, kp)
        if self.size and self.size != image.shape:
            image, mask, kp = resize_sample(image, mask, kp, self.size)
        sample = make_sample(np.ascontiguousarray(image), np.ascontiguousarray(mask), kp, {
            "case_id": case.name, "view": case.view, "spacing_mm": spacing, "source": str(case.image),
            "mirrored": bool(mirrored)})
        return self.transform(sample) if self.transform else sample


class BS80KDataModule(BoneScanDataModule):
    """The BS-80K layout as a datamodule (conf/data/bs80k.yaml).

    Args:
        root: the dataset folder (masks/, splits/, class_labels.json).
        images: the folder of the scans (None = ``root/images``).
        view: anterior | posterior | both.
        fold: cross-validation fold (0..num_folds-1) or None (the train/val/test lists).
        num_folds, split_seed, folds_out: the seeded split made when no splits_5fold.json ships.
        mirror_posterior, size: as ``BS80KDataset`` (for the datasets built without a partial).
        train_dataset, val_dataset, test_dataset: ``BS80KDataset`` partials (Hydra ``_partial_``)
            or None (plain ``BS80KDataset``); each gets ``cases=`` and ``split=``.
        verify: read by ``bonepatch.train`` (run ``bonepatch.verify`` first); unused here.
    """

    def __init__(self, root, images=None, view: str = "both", fold: int | None = None, num_folds: int = 5,
                 split_seed: int = 0, folds_out=None, mirror_posterior: bool = False, size=None,
                 train_dataset=None, val_dataset=None, test_dataset=None, verify: bool = True, **loader):
        self.layout = Layout(root, images, view)
        self.layout.raise_problems()  # names, pairing, splits, folds, leakage: before any training
        self.fold = None if fold is None else int(fold)
        datasets = {}
        for split, factory in (("train", train_dataset), ("val", val_dataset), ("test", test_dataset)):
            cases = split_cases(self.layout, split, self.fold, num_folds, split_seed, folds_out)
            make = factory or (lambda **kw: BS80KDataset(mirror_posterior=mirror_posterior, size=size, **kw))
            datasets[split] = None if cases is None else make(cases=cases, split=split)
        super().__init__(datasets["train"], datasets["val"], datasets["test"], verify=verify, **loader)
