"""Skeleton geometry of the phantom: a :class:`Subject` -> shapes in pixel coordinates of a view.

The body is laid out in units of body height ``u`` (vertex at y=0, feet at y=1, x from the
midline, image-left = -1 side on the anterior view), after Drillis & Contini proportions
(docs/DESIGN.md), then placed, rotated and - for the posterior view - mirrored left-right. Children
get a larger head (everything below the chin is compressed to fit). The posterior view is the
same subject seen from behind: the same shapes mirrored, with view-specific labels (no sternum,
long cervical column, rib stripes, scapula over the ribs) and attenuation (``depth``).
"""
from __future__ import annotations

import numpy as np

from bonepatch.anatomy import CLASS_IDS as C
from bonepatch.data.phantom.limbs import add_arm, add_leg, add_pelvis
from bonepatch.data.phantom.shapes import Shape, attenuation

#: Label painting order per view, lowest priority first (later classes overwrite earlier ones).
PAINT_ORDER = {
    "anterior": ("scapula", "rib", "clavicle", "sternum", "humerus", "pelvis", "femur",
                 "sacrum", "lumbar_vertebrae", "thoracic_vertebrae", "skull", "cervical_vertebrae"),
    "posterior": ("rib", "scapula", "clavicle", "sternum", "humerus", "pelvis", "femur",
                  "sacrum", "lumbar_vertebrae", "thoracic_vertebrae", "skull", "cervical_vertebrae"),
}
#: Spine levels: (first label, count, top y, bottom y, half-width top, half-width bottom) in u.
SPINE = (("cervical_vertebrae", 7, 0.115, 0.178, 0.009, 0.010),
         ("thoracic_vertebrae", 12, 0.178, 0.345, 0.011, 0.014),
         ("lumbar_vertebrae", 5, 0.345, 0.445, 0.016, 0.019))
RIB_REACH = (0.045, 0.064, 0.076, 0.084, 0.088, 0.09, 0.091, 0.09, 0.087, 0.082, 0.07, 0.058)
CHIN = 0.135  # u; anterior cervical vertebrae above it hide behind the mandible (no label)


class Body:
    """Shapes and keypoint ends of one subject in one view (see the module docstring)."""

    def __init__(self, subj, view: str, rib_label: str, width: int):
        self.s, self.view, self.width = subj, view, width
        self.post = view == "posterior"
        self.hs = subj.head_frac / 0.13
        self.shapes: list[Shape] = []
        self.soft: list[Shape] = []
        self.ends: dict[str, tuple[Shape, bool]] = {}  # keypoint -> (shape, top end?)
        self.joints: list[Shape] = []                 # degenerative-change candidates
        self.rib_pad = {"arcs": 0.0, "region": 1.3 / subj.height_px if self.post else 0.0}[rib_label]
        self.rib_region = rib_label == "region" and not self.post
        self.u = subj.uptake

    # -- placement -------------------------------------------------------------------------
    def to_px(self, pts, head: bool = False) -> np.ndarray:
        """(n, 2) body units -> (n, 2) pixels of the anterior view (mirroring comes later)."""
        s, h = self.s, self.s.height_px
        chin = 0.13 * self.hs
        c, sn = np.cos(s.rot), np.sin(s.rot)
        xs = (self.hs if head else s.breadth) * h
        ky = (1 - chin) / 0.87
        out = []
        for x, y in np.asarray(pts, np.float64).reshape(-1, 2).tolist():  # few points: plain floats
            y = y * self.hs if y < 0.13 else chin + (y - 0.13) * ky
            x, yc = x * xs, (y - 0.5) * h
            out.append((c * x - sn * yc + s.cx_px, sn * x + c * yc + 0.5 * h + s.top_px))
        return np.array(out)

    def add(self, kind, pts, rad, upt, label="", site="", depth=0.5, thick=20.0, pad=0.0,
            angle=0.0, shell=0.0, head=False, soft=False) -> Shape:
        """Append a shape given in body units; returns it (pixel units)."""
        scale = self.s.height_px * (self.hs if head else 1.0)
        pts = self.to_px(pts, head)
        rad = np.asarray(rad, np.float64) * scale
        if kind == "tube":
            rad = rad if rad.ndim else np.full(len(pts), float(rad))
            upt = np.asarray(upt, np.float64) if np.ndim(upt) else np.full(len(pts), float(upt))
        shape = Shape(kind, pts, rad, upt, C[label] if label else 0, pad * self.s.height_px,
                      depth, thick, angle + self.s.rot, shell, site)
        (self.soft if soft else self.shapes).append(shape)
        return shape

    # -- body parts ------------------------------------------------------------------------
    def head(self):
        u = self.u
        self.ends["skull_top"] = (self.add("ellipse", [0, 0.062], [0.046, 0.06], u["skull"],
                                           "skull", "skull", 0.5, 18, shell=0.22, head=True), True)
        self.add("ellipse", [0, 0.1], [0.026, 0.017], u["face"], "skull", "skull", 0.15, 18, head=True)
        self.add("tube", [[-0.031, 0.097], [-0.025, 0.12], [0, 0.13], [0.025, 0.12], [0.031, 0.097]],
                 0.005, u["face"], "skull", "skull", 0.2, 18, head=True)
        self.add("ellipse", [0, 0.065], [0.056, 0.07], 1.0, head=True, soft=True)

    def spine(self):
        """Cervical, thoracic and lumbar columns: one tube each (label footprint = column),
        with disc gaps as a periodic dip of activity (``Shape.period``)."""
        u, s = self.u, self.s
        for label, n, y0, y1, w0, w1 in SPINE:
            step = (y1 - y0) / n
            top = y0 if (self.post or label != "cervical_vertebrae") else CHIN
            if top > y0:  # upper cervical spine behind the mandible: activity only
                self.column(y0, top, w0, w0, step, "", 0.6)
            col = self.column(top, y1, np.interp(top, [y0, y1], [w0, w1]), w1, step, label,
                              {"cervical_vertebrae": 0.6, "thoracic_vertebrae": 0.72}.get(label, 0.65))
            if label == "thoracic_vertebrae":
                for i in range(n):
                    yc = y0 + (i + 0.5) * step
                    self.rib(i, yc, self.spine_x(yc))
            if label == "cervical_vertebrae":
                self.ends["skull_base"] = (col, True)
            key = {"cervical_vertebrae": "c7", "thoracic_vertebrae": "t12", "lumbar_vertebrae": "l5"}
            self.ends[key[label]] = (col, False)
            if label == "lumbar_vertebrae":
                self.joints.append(col)
        self.ends["sacrum_tip"] = (self.add(
            "poly", [[-0.03, 0.445], [0.03, 0.445], [0.016, 0.475], [0, 0.49], [-0.016, 0.475]],
            0.0, u["sacrum"], "sacrum", "spine", 0.8, 22), False)
        for sd in (-1, 1):  # sacroiliac joints
            self.add("tube", [[sd * 0.028, 0.447], [sd * 0.02, 0.47]], 0.006, u["si"], "", "", 0.7, 22)
        self.add("tube", [[0, 0.2], [0, 0.3], [0, 0.42], [0, 0.5]], [0.105, 0.1, 0.09, 0.1], 1.0,
                 soft=True)
        self.add("tube", [[0, 0.12], [0, 0.19]], 0.035, 1.0, soft=True)
        for sd in (-1, 1):
            self.add("ellipse", [sd * 0.045, 0.335], [0.016, 0.029], s.kidney, depth=0.75,
                     thick=22, angle=-sd * 0.25)
        if s.bladder > 0:
            self.add("ellipse", [0, 0.488 - 0.8 * s.bladder_r], [s.bladder_r * 1.1, s.bladder_r],
                     s.bladder, depth=0.3, thick=20)

    def column(self, y0, y1, w0, w1, step, label, depth) -> Shape:
        """A spine column from y0 to y1 (caps included), half-width w0 -> w1, discs every step."""
        n = 4  # enough vertices to follow a scoliotic curve
        w = np.linspace(w0, w1, n)
        ys = np.linspace(y0 + w0, y1 - w1, n)
        pts = [[self.spine_x(y), y] for y in ys]
        col = self.add("tube", pts, w, self.u["spine"], label, "spine", depth, 22)
        col.period = (step * self.s.height_px, float(self.to_px([0, y0])[0, 1]))
        return col

    def spine_x(self, y: float) -> float:
        """Lateral offset (u) of the spine at height y: one scoliotic curve from T1 to L5."""
        t = np.clip((y - 0.178) / (0.445 - 0.178), 0, 1)
        return self.s.scoliosis * np.sin(np.pi * t)

    def rib(self, i: int, y0: float, xo: float):
        """Rib i (0 = first) of both sides: one tube along the posterior arc and, for ribs
        1-10, one along the anterior arc towards the sternum. The view attenuation of each arc
        (depth 0.85 vs 0.15) is baked into its vertex uptake, so the shape itself has none."""
        w_post, w_ant = (attenuation(d, 22, self.post) for d in (0.85, 0.15))
        for sd in (-1, 1):
            e = RIB_REACH[i] * sd
            if i >= 10:  # floating ribs: short, no anterior arc
                pts = [[xo + sd * 0.014, y0], [0.6 * e, y0 + 0.004], [e, y0 + 0.02]]
                upt = [self.u["rib"] * w_post] * 3
            else:
                drop = 0.018 + 0.007 * i
                end = [sd * 0.015, y0 + drop] if i < 7 else [0.5 * e, y0 + drop + 0.01]
                pts = [[xo + sd * 0.014, y0], [xo + 0.45 * e, y0 - 0.003], [0.8 * e, y0 + 0.007],
                       [e, y0 + 0.028], [0.75 * e, y0 + drop * 0.7], end]
                upt = [self.u["rib"] * w_post] * 4 + [self.u["rib"] * 0.6 * w_ant] * 2
            self.add("tube", pts, 0.0034, upt, "rib", "rib", 0.0, 0.0, pad=self.rib_pad)

    def thorax(self):
        u = self.u
        st = "" if self.post else "sternum"
        self.add("ellipse", [0, 0.2], [0.022, 0.014], u["sternum"], st, "", 0.05, 22)
        self.add("tube", [[0, 0.215], [0, 0.3], [0, 0.315]], [0.011, 0.009, 0.004], u["sternum"],
                 st, "", 0.05, 22)
        for sd in (-1, 1):
            self.add("tube", [[sd * 0.018, 0.183], [sd * 0.05, 0.18], [sd * 0.08, 0.172],
                              [sd * 0.1, 0.176]], 0.0045, u["clavicle"], "clavicle", "", 0.15, 22)
            self.add("poly", [[sd * 0.04, 0.19], [sd * 0.092, 0.2], [sd * 0.06, 0.29],
                              [sd * 0.038, 0.245]], 0.0, u["scapula"], "scapula", "", 0.88, 22)
            self.joints.append(self.add("tube", [[sd * 0.042, 0.205], [sd * 0.085, 0.19],
                                                 [sd * 0.1, 0.18]], 0.004, u["scapula"] * 1.6,
                                        "scapula", "", 0.85, 22))
        if self.rib_region:
            self.rib_cage()

    def rib_cage(self):
        """Label-only convex region of each side's ribs (anterior 'region' convention)."""
        from scipy.spatial import ConvexHull

        ribs = [s for s in self.shapes if s.label == C["rib"]]
        mid = self.to_px([0, 0.3])[0, 0]
        for sd in (-1, 1):
            pts = np.concatenate([s.pts for s in ribs if sd * (s.pts[:, 0].sum() / len(s.pts) - mid) > 0])
            hull = pts[ConvexHull(pts).vertices]
            self.shapes.append(Shape("poly", hull, np.zeros(1), 0.0, C["rib"],
                                     pad=float(ribs[0].rad[0]), tag=""))

    def build(self):
        self.head()
        self.spine()
        self.thorax()
        add_pelvis(self)
        for side in (0, 1):
            miss = self.s.missing[0] if self.s.missing and self.s.missing[1] == side else None
            if miss != "arm":
                add_arm(self, side)
            if miss != "leg":
                add_leg(self, side, shank=miss != "shank")
        return self
