"""Skeleton geometry of the phantom: a :class:`Subject` -> shapes in pixel coordinates of a view.

The body is laid out in units of body height ``u`` (vertex at y=0, feet at y=1, x from the
midline, image-left = -1 side on the anterior view), after Drillis & Contini proportions
(docs/DESIGN.md) as real scans show them (supine, shoulders up: T1 at 0.149, the humeral head top
at 0.164, measured on the shared real maps), then placed, rotated and - for the posterior view
- mirrored left-right. Children get a larger head (everything below the chin is compressed to
fit). The posterior view is the same subject seen from behind: the same shapes mirrored, with
view-specific labels and attenuation (``depth``). Head: :mod:`skull`; chest: :mod:`thorax`;
limbs and pelvis: :mod:`limbs`.
"""
from __future__ import annotations

import numpy as np

from bonepatch.anatomy import CLASS_IDS as C
from bonepatch.data.phantom.limbs import add_arm, add_leg, add_pelvis
from bonepatch.data.phantom.shapes import Shape
from bonepatch.data.phantom.skull import add_head
from bonepatch.data.phantom.thorax import add_ribs, add_thorax

#: Label painting order per convention and view, lowest priority first (later classes win).
PAINT_ORDER = {
    ("reference", "anterior"): (
        "scapula", "rib", "clavicle", "humerus", "femur", "pelvis", "sacrum", "lumbar_vertebrae",
        "thoracic_vertebrae", "sternum", "skull", "cervical_vertebrae"),
    ("reference", "posterior"): (
        "rib", "scapula", "clavicle", "sternum", "humerus", "femur", "pelvis", "sacrum",
        "lumbar_vertebrae", "thoracic_vertebrae", "skull", "cervical_vertebrae"),
    ("anatomic", "anterior"): (
        "scapula", "rib", "clavicle", "sternum", "humerus", "pelvis", "femur", "sacrum",
        "lumbar_vertebrae", "thoracic_vertebrae", "skull", "cervical_vertebrae"),
    ("anatomic", "posterior"): (
        "rib", "scapula", "clavicle", "sternum", "humerus", "pelvis", "femur", "sacrum",
        "lumbar_vertebrae", "thoracic_vertebrae", "skull", "cervical_vertebrae"),
}
#: Spine levels: (label, count, top y, bottom y, half-width top, half-width bottom) in u.
SPINE = (("cervical_vertebrae", 7, 0.088, 0.149, 0.0085, 0.0092),
         ("thoracic_vertebrae", 12, 0.149, 0.325, 0.0095, 0.012),
         ("lumbar_vertebrae", 5, 0.325, 0.41, 0.0125, 0.0145))
NECK = 0.1275  # u; the anterior cervical label starts below the mandible (skull.CHIN)
LEVEL0 = {"cervical_vertebrae": 0, "thoracic_vertebrae": 8, "lumbar_vertebrae": 21}


class Body:
    """Shapes and keypoint ends of one subject in one view (see the module docstring)."""

    def __init__(self, subj, view: str, rib_label: str, width: int, convention: str = "reference"):
        self.s, self.view, self.width = subj, view, width
        self.post = view == "posterior"
        self.ref = convention == "reference"
        self.convention = convention
        self.hs = subj.head_frac / 0.13
        self.shapes: list[Shape] = []
        self.soft: list[Shape] = []
        self.ends: dict[str, tuple[Shape, bool]] = {}  # keypoint -> (shape, top end?)
        self.joints: list[Shape] = []                 # degenerative-change candidates
        self._unplaced: list[tuple[Shape, bool]] = []  # shapes still in body units
        stripes = rib_label == "region_stripes" and self.post
        self.rib_pad = 1.3 / subj.height_px if stripes else 0.0
        self.rib_region = rib_label == "region" or (rib_label == "region_stripes" and not self.post)
        self.u = subj.uptake

    # -- placement -------------------------------------------------------------------------
    def to_px(self, pts, head=False) -> np.ndarray:
        """(n, 2) body units -> (n, 2) pixels of the anterior view (mirroring comes later);
        ``head``: a bool or an (n,) bool array (head points scale with the head size)."""
        s, h = self.s, self.s.height_px
        p = np.asarray(pts, np.float64).reshape(-1, 2)
        head = np.broadcast_to(np.asarray(head, bool), (len(p),))
        chin = 0.13 * self.hs
        y = np.where(p[:, 1] < 0.13, p[:, 1] * self.hs, chin + (p[:, 1] - 0.13) * ((1 - chin) / 0.87))
        x = p[:, 0] * np.where(head, self.hs * h, s.breadth * h)
        yc = (y - 0.5) * h
        c, sn = np.cos(s.rot), np.sin(s.rot)
        return np.stack([c * x - sn * yc + s.cx_px, sn * x + c * yc + 0.5 * h + s.top_px], 1)

    def add(self, kind, pts, rad, upt, label="", site="", depth=0.5, thick=20.0, pad=0.0,
            angle=0.0, shell=0.0, head=False, soft=False, hot=0) -> Shape:
        """Append a shape given in body units; returns it (its ``pts`` become pixels when
        :meth:`build` ends: all shapes are placed in one vectorised :meth:`to_px`). ``hot``:
        hotspot class (1 lesion, 2 degenerative, 3 artefact / bladder; 0 none)."""
        scale = self.s.height_px * (self.hs if head else 1.0)
        pts = np.asarray(pts, np.float64).reshape(-1, 2)
        rad = np.asarray(rad, np.float64) * scale
        if kind == "tube":
            rad = rad if rad.ndim else np.full(len(pts), float(rad))
            upt = np.asarray(upt, np.float64) if np.ndim(upt) else np.full(len(pts), float(upt))
        shape = Shape(kind, pts, rad, upt, C[label] if label else 0, pad * self.s.height_px,
                      depth, thick, angle + self.s.rot, shell, site)
        shape.hot = hot
        (self.soft if soft else self.shapes).append(shape)
        self._unplaced.append((shape, head))
        return shape

    def place(self) -> None:
        """Body units -> pixels for every shape added since the last call (one numpy pass)."""
        if not self._unplaced:
            return
        n = [len(sh.pts) for sh, _ in self._unplaced]
        px = self.to_px(np.concatenate([sh.pts for sh, _ in self._unplaced]),
                        np.repeat([hd for _, hd in self._unplaced], n))
        for (sh, _), a, b in zip(self._unplaced, np.cumsum(n) - n, np.cumsum(n)):
            sh.pts = px[a:b]
        self._unplaced = []

    # -- spine -----------------------------------------------------------------------------
    def spine(self):
        """Cervical, thoracic and lumbar columns: one tube each (label footprint = column) with
        per-level uptake and width jitter and disc gaps as a periodic activity dip; posterior
        elements (costovertebral and facet joints) as unlabelled dotted rows beside it."""
        u, s = self.u, self.s
        for label, n, y0, y1, w0, w1 in SPINE:
            step = (y1 - y0) / n
            cerv = label == "cervical_vertebrae"
            top = NECK if (cerv and not self.post) else y0
            if top > y0:  # upper cervical spine behind the mandible: activity only
                self.column(y0, top, w0, w0, step, "", 0.6, 0, 2)
            wt = np.interp(top, [y0, y1], [w0, w1])
            pad = (0.002 if not self.post else 0.0015) if cerv and self.ref else 0.0  # neck region
            col = self.column(top, y1, wt, w1, step, label,
                              {"cervical_vertebrae": 0.6, "thoracic_vertebrae": 0.72}.get(label, 0.65),
                              LEVEL0[label], n, pad)
            if label == "thoracic_vertebrae":
                add_ribs(self, y0, step, n)
            if cerv:
                self.ends["skull_base"] = (col, True)
            key = {"cervical_vertebrae": "c7", "thoracic_vertebrae": "t12", "lumbar_vertebrae": "l5"}
            self.ends[key[label]] = (col, False)
            if label != "cervical_vertebrae":  # costovertebral / facet joints: dotted rows
                off = 0.017 if label == "thoracic_vertebrae" else 0.011
                yc = y0 + (np.arange(n) + 0.5) * step
                for sd in (-1, 1):
                    dots = self.add("tube", [[self.spine_x(y) + sd * off, y] for y in yc], 0.003,
                                    u["spine"] * 0.4 * s.spine_jit[LEVEL0[label]:LEVEL0[label] + n],
                                    "", "", 0.85, 22)
                    dots.period = col.period
            if label == "lumbar_vertebrae":
                self.joints.append(col)
        self.ends["sacrum_tip"] = (self.add(
            "poly", [[-0.022, 0.41], [0.022, 0.41], [0.014, 0.436], [0, 0.452], [-0.014, 0.436]],
            0.0, u["sacrum"], "sacrum", "spine", 0.8, 22, pad=0.003 if self.ref and self.post else 0.0),
            False)
        for sd in (-1, 1):  # sacroiliac joints
            self.add("tube", [[sd * 0.024, 0.412], [sd * 0.018, 0.436]], 0.0055, u["si"], "", "", 0.7, 22)
        # soft tissue (shapes add up where they overlap: torso cap, shoulders and neck barely do)
        self.add("tube", [[0, 0.235], [0, 0.3], [0, 0.42], [0, 0.5]], [0.115, 0.11, 0.1, 0.106], 1.0,
                 soft=True)
        self.add("tube", [[0, 0.118], [0, 0.15]], 0.03, 1.0, soft=True)
        self.add("tube", [[-0.082, 0.19], [0.082, 0.19]], 0.04, 1.0, soft=True)
        for sd in (-1, 1):
            self.add("ellipse", [sd * 0.045, 0.315], [0.016, 0.029], s.kidney, depth=0.75,
                     thick=22, angle=-sd * 0.25)
        if s.bladder > 0:
            self.add("ellipse", [0, 0.488 - 0.8 * s.bladder_r], [s.bladder_r * 1.1, s.bladder_r],
                     s.bladder, depth=0.3, thick=20, hot=3)

    def column(self, y0, y1, w0, w1, step, label, depth, level0, n, pad=0.0) -> Shape:
        """A spine column from y0 to y1 (caps included), half-width w0 -> w1, n + 1 vertices with
        the levels' uptake and width jitter, discs every step."""
        s = self.s
        k = np.arange(n + 1)
        jit = s.width_jit[level0 + np.minimum(k, n)]
        w = np.linspace(w0, w1, n + 1) * jit
        ys = np.linspace(y0 + w[0], y1 - w[-1], n + 1)
        pts = [[self.spine_x(y), y] for y in ys]
        col = self.add("tube", pts, w, self.u["spine"] * s.spine_jit[level0 + k], label, "spine",
                       depth, 22, pad=pad)
        col.period = (step * s.height_px, float(self.to_px([0, y0])[0, 1]))
        return col

    def spine_x(self, y: float) -> float:
        """Lateral offset (u) of the spine at height y: one scoliotic curve from T1 to L5."""
        t = np.clip((y - 0.149) / (0.41 - 0.149), 0, 1)
        return self.s.scoliosis * np.sin(np.pi * t)

    def build(self):
        add_head(self)
        self.spine()
        add_thorax(self)
        add_pelvis(self)
        for side in (0, 1):
            miss = self.s.missing[0] if self.s.missing and self.s.missing[1] == side else None
            if miss != "arm":
                add_arm(self, side)
            if miss != "leg":
                add_leg(self, side, shank=miss != "shank")
        self.place()
        return self
