"""From a scan as exported to the views the model reads: polarity, edge lines and caption strips,
orientation, side-by-side panels, undistorted fit; each with a note for ``summary.csv`` and the log.

``prepare(view, size, options)`` -> one :class:`PreparedView` per body view found in a read
image (two for an anterior | posterior screenshot). Its ``view.image`` is the upright,
polarity-corrected panel; ``frame`` maps it back onto the input's pixel grid, ``fit`` places it in
the model's frame. A view that must not be segmented carries the reason in ``flag``. The input
array is never changed.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from . import predict_layout as layout
from .data.io import ScanView
from .geometry.resize import Letterbox
from .predict_checks import screen
from .predict_frame import ViewFrame

POLARITIES = ("auto", "normal", "inverted")
ORIENTATIONS = ("auto", "check", "upright", "head_left", "head_right")
PANELS = ("auto", "single", "pair")
_TURNS = {"left": -1, "right": 1}  # head on that side -> quarter turns (np.rot90 k) to upright


@dataclass(frozen=True)
class PrepareOptions:
    """How exports are read (``conf/predict.yaml``; docs/predict.md).

    polarity: auto (detect dark bone on white) | normal | inverted.
    orientation: auto (turn a lying body upright; refuse when the head end is unclear) | check
        (refuse lying bodies) | upright (never turn) | head_left / head_right (turn every image
        with its head on that side: 90 degrees clockwise / counter-clockwise).
    panels: auto (split side-by-side views) | single | pair (always split at the gap or the middle).
    panel_views: names of the left and right panel. min_total_counts: views with fewer are flagged.
    """

    polarity: str = "auto"
    orientation: str = "auto"
    panels: str = "auto"
    panel_views: tuple[str, str] = ("anterior", "posterior")
    min_total_counts: float = 1000.0

    def __post_init__(self):
        for name, allowed in (("polarity", POLARITIES), ("orientation", ORIENTATIONS), ("panels", PANELS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r} is not one of {allowed}; fix conf/predict.yaml "
                                 f"or the command line ({name}=...)")
        views = tuple(str(v) for v in self.panel_views)
        if len(views) != 2 or not all(v in ("anterior", "posterior", "unknown") for v in views):
            raise ValueError(f"panel_views={self.panel_views!r}: give two of anterior, posterior, unknown "
                             "(left panel first), e.g. panel_views=[posterior,anterior]")
        object.__setattr__(self, "panel_views", views)


@dataclass
class PreparedView:
    """One view ready for the model. view.image: float32 (h, w) upright, polarity-corrected counts."""

    view: ScanView
    frame: ViewFrame
    fit: Letterbox | None = None
    notes: list[str] = field(default_factory=list)
    flag: str = ""
    inverted: bool = False
    rotation: int = 0  # degrees clockwise the input was turned to upright
    panel: int | str = ""  # 0 = left, 1 = right of a side-by-side image; "" = a single view


def _polarity(image: np.ndarray, mode: str) -> tuple[np.ndarray, bool, str]:
    inverted = layout.inverted_score(image) > layout.INVERTED_ABOVE if mode == "auto" else mode == "inverted"
    if not inverted:
        return image, False, ""
    how = "detected" if mode == "auto" else "polarity=inverted"
    return (float(image.max()) - image).astype(np.float32), True, \
        f"inverted intensity (dark bone on a light background, {how}): inverted back"


def _clean_edges(image: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int], str]:
    """Uniform bright lines blanked; edge lines and caption bands cropped -> (image, outer crop, note)."""
    rows, cols = layout.line_masks(image)
    h, w = image.shape
    if rows.all() or cols.all():
        return image, (0, h, 0, w), ""
    out = image.copy()
    background = float(np.percentile(image, 1))
    out[rows] = background
    out[:, cols] = background
    keep_rows, keep_cols = np.flatnonzero(~rows), np.flatnonzero(~cols)
    y0, y1, x0, x1 = keep_rows[0], keep_rows[-1] + 1, keep_cols[0], keep_cols[-1] + 1
    c0, c1 = layout.caption_rows(out[y0:y1, x0:x1])
    notes = []
    if rows.any() or cols.any():
        notes.append(f"{int(rows.sum())} line rows / {int(cols.sum())} line columns (borders, separators) blanked")
    if c0 > 0 or c1 < y1 - y0:
        notes.append(f"caption strip cropped ({c0} rows at the top, {y1 - y0 - c1} at the bottom)")
    y0, y1 = y0 + c0, y0 + c1
    return out[y0:y1, x0:x1], (int(y0), int(y1), int(x0), int(x1)), "; ".join(notes)


def _orientation(image: np.ndarray, mode: str) -> tuple[int, str, str]:
    """(np.rot90 turns to upright, note, refusal)."""
    if mode in ("head_left", "head_right"):
        k = _TURNS[mode[5:]]
        return k, f"turned 90 degrees {'clockwise' if k < 0 else 'counter-clockwise'} ({mode})", ""
    if mode == "upright":
        return 0, "", ""
    lying, head, share = layout.lying_head(image)
    if not lying:
        return 0, "", ""
    fix = ("turn the image upright (head at the top), or pass orientation=head_left / head_right to turn it, "
           "or orientation=upright if it is upright")
    if mode == "check":
        return 0, "", f"landscape: the body lies horizontally; {fix}"
    if head is None:
        return 0, "", (f"landscape: the body lies horizontally and the head end is unclear (counts "
                       f"{share:.2f} left / {1 - share:.2f} right); {fix}")
    k = _TURNS[head]
    return k, (f"landscape, head on the {head} ({max(share, 1 - share):.2f} of the counts): "
               f"turned 90 degrees {'clockwise' if k < 0 else 'counter-clockwise'}"), ""


def _panels(image: np.ndarray, mode: str) -> list[tuple[int, int]]:
    w = image.shape[1]
    if mode == "single":
        return [(0, w)]
    cut = layout.panel_split(image)
    if cut is None and mode == "pair":
        cut = w // 2
    return [(0, w)] if cut is None else [(0, cut), (cut, w)]


def prepare(view: ScanView, size: tuple[int, int], options: PrepareOptions = PrepareOptions()) -> list[PreparedView]:
    """The views of one read image, prepared for a model of input ``size`` (H, W)."""
    shape = view.image.shape
    whole = ViewFrame.whole(shape)
    image, inverted, note = _polarity(np.asarray(view.image, np.float32), options.polarity)
    notes = [note] if note else []
    first = PreparedView(replace(view, image=image), whole, notes=notes, inverted=inverted)
    first.flag = screen(image, options.min_total_counts)
    if first.flag:
        return [first]
    cleaned, outer, note = _clean_edges(image)
    notes += [note] if note else []
    k, note, refusal = _orientation(cleaned, options.orientation)
    notes += [note] if note else []
    if refusal:
        first.flag = refusal
        return [first]
    upright = np.ascontiguousarray(np.rot90(cleaned, k))
    spans = _panels(upright, options.panels)
    out = []
    for i, (x0, x1) in enumerate(spans):
        frame = ViewFrame(shape, outer, k, (0, upright.shape[0], x0, x1))
        name = view.view if len(spans) == 1 else options.panel_views[i]
        flipped = view.flipped if len(spans) == 1 else name == "posterior"
        panel_notes = list(notes)
        if len(spans) == 2:
            panel_notes.append(f"{'left' if i == 0 else 'right'} panel of two side-by-side views (columns "
                               f"{frame.region()[0]}-{frame.region()[2] - 1}): named {name}")
        pv = PreparedView(replace(view, image=upright[:, x0:x1].copy(), view=name, flipped=flipped), frame,
                          notes=panel_notes, inverted=inverted, rotation=-90 * k, panel=i if len(spans) == 2 else "")
        pv.flag = screen(pv.view.image, options.min_total_counts) if len(spans) == 2 else ""
        if not pv.flag:
            pv.fit, note = layout.plan_fit(pv.view.image, size)
            pv.notes += [note] if note else []
        out.append(pv)
    return out
