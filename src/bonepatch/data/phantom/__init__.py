"""Procedural whole-body bone scan phantom (99mTc-MDP, anterior + posterior planar views).

Each sample is one view: ``{"image": (H, W) float32 counts, "mask": (H, W) uint8 label ids of
bonepatch.anatomy.CLASSES, "keypoints": (16, 3) float32 x, y, vis, "hotspots": (H, W) uint8
(0 none, 1 lesion, 2 degenerative, 3 artefact / bladder), "meta": {...}}``,
deterministic per ``(seed, index)``. With ``view="both"`` index ``2k`` is subject ``k``
anterior and ``2k + 1`` the same subject posterior. See docs/phantom.md for what is modelled.

>>> s = render(0, 0, PhantomConfig())
>>> s["image"].shape, s["mask"].dtype, s["keypoints"].shape, s["meta"]["view"]
((1024, 256), dtype('uint8'), (16, 3), 'anterior')

Modules: ``config`` (PhantomConfig), ``subject`` (random draws), ``body`` / ``skull`` /
``thorax`` / ``limbs`` / ``shapes``
(skeleton geometry), ``raster`` (fast rasteriser), ``imaging`` (lesions, labels, physics,
noise), ``generate`` (render), ``writer`` (datasets on disk), ``preview`` (montage PNG).

CLI: ``python -m bonepatch.data.phantom --out DIR --n N [--seed S] [--preview FILE.png]``.
"""
from bonepatch.data.phantom.config import PhantomConfig
from bonepatch.data.phantom.generate import render, render_pair
from bonepatch.data.phantom.preview import preview
from bonepatch.data.phantom.writer import write_dataset

__all__ = ["PhantomConfig", "render", "render_pair", "write_dataset", "preview"]
