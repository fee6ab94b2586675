"""Where a prepared view's pixels come from in the input image, and the way back.

A view given to the model is ``rot90(input[outer], k)[inner]``: a crop of the input (edge
lines and caption strips cut off), turned upright by ``k`` quarter turns counter-clockwise
(``np.rot90``; ``k=-1`` is one turn clockwise), and cut to one panel. :class:`ViewFrame` maps
arrays and points of the view back onto the input's pixel grid exactly (pixel [row, col] centre
at (x=col, y=row)).

>>> frame = ViewFrame((4, 6), (0, 4, 1, 6), -1, (0, 5, 0, 2))
>>> img = np.arange(24.).reshape(4, 6); view = frame.from_input(img); view.shape
(5, 2)
>>> back = frame.to_input(view, fill=-1); bool(((back == img) | (back == -1)).all()), int((back == img).sum())
(True, 10)
>>> frame.points_to_input(np.array([[0., 0.]])).tolist()  # view pixel (0, 0) is input (x=1, y=3)
[[1.0, 3.0]]
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _rot_shape(shape: tuple[int, int], k: int) -> tuple[int, int]:
    return tuple(shape) if k % 2 == 0 else (shape[1], shape[0])


@dataclass(frozen=True)
class ViewFrame:
    """A view = ``np.rot90(input[y0:y1, x0:x1], k)[v0:v1, u0:u1]``.

    shape: the input's (H, W). outer: (y0, y1, x0, x1) crop of the input. k: quarter turns
    counter-clockwise that make it upright. inner: (y0, y1, x0, x1) of the panel in the turned crop.
    """

    shape: tuple[int, int]
    outer: tuple[int, int, int, int]
    k: int
    inner: tuple[int, int, int, int]

    @classmethod
    def whole(cls, shape: tuple[int, int]) -> "ViewFrame":
        h, w = shape
        return cls((h, w), (0, h, 0, w), 0, (0, h, 0, w))

    @property
    def view_shape(self) -> tuple[int, int]:
        v0, v1, u0, u1 = self.inner
        return v1 - v0, u1 - u0

    @property
    def turned_shape(self) -> tuple[int, int]:
        y0, y1, x0, x1 = self.outer
        return _rot_shape((y1 - y0, x1 - x0), self.k)

    def from_input(self, image: np.ndarray) -> np.ndarray:
        """(..., H, W) input -> (..., h, w) view (a copy)."""
        y0, y1, x0, x1 = self.outer
        v0, v1, u0, u1 = self.inner
        turned = np.rot90(image[..., y0:y1, x0:x1], self.k, axes=(-2, -1))
        return np.ascontiguousarray(turned[..., v0:v1, u0:u1])

    def to_input(self, array: np.ndarray, fill=0) -> np.ndarray:
        """(..., h, w) view array -> (..., H, W) on the input's grid; pixels outside the view = ``fill``."""
        lead = array.shape[:-2]
        v0, v1, u0, u1 = self.inner
        turned = np.full((*lead, *self.turned_shape), fill, array.dtype)
        turned[..., v0:v1, u0:u1] = array
        y0, y1, x0, x1 = self.outer
        out = np.full((*lead, *self.shape), fill, array.dtype)
        out[..., y0:y1, x0:x1] = np.rot90(turned, -self.k, axes=(-2, -1))
        return out

    def points_to_input(self, points: np.ndarray) -> np.ndarray:
        """Points (..., >=2) x, y in view pixels -> input pixels (later columns kept)."""
        p = np.array(points, np.float64, copy=True)
        p[..., 0] += self.inner[2]
        p[..., 1] += self.inner[0]
        y0, y1, x0, x1 = self.outer
        shapes = [(y1 - y0, x1 - x0)]  # shape after each counter-clockwise turn
        turns = self.k % 4
        for _ in range(turns):
            shapes.append(_rot_shape(shapes[-1], 1))
        for i in reversed(range(turns)):  # undo turn i: result[r, c] = before[c, w_before - 1 - r]
            x, y = p[..., 0].copy(), p[..., 1].copy()
            p[..., 0], p[..., 1] = shapes[i][1] - 1 - y, x
        p[..., 0] += x0
        p[..., 1] += y0
        return p.astype(np.float32)

    def region(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1), exclusive ends: the input pixels the view covers."""
        corners = self.points_to_input(np.array([[0, 0], [self.view_shape[1] - 1, self.view_shape[0] - 1]]))
        (xa, ya), (xb, yb) = corners.round().astype(int)
        return int(min(xa, xb)), int(min(ya, yb)), int(max(xa, xb)) + 1, int(max(ya, yb)) + 1
