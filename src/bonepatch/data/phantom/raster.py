"""Vectorised rasterisation of all shapes of one view (the fast path of ``shapes``).

Shapes are evaluated on 8x8 pixel tiles, a few hundred tiles per numpy pass with per-tile
parameters broadcast over the tile's 64 pixels (no per-shape numpy calls). A tube's tiles lie
on a grid of its own box; each tile is evaluated against every segment whose box touches it
and keeps, per pixel, the segment of least normalised distance ``q`` (as
:func:`shapes.rasterise`, shape by shape). Labels are painted as a per-pixel max of
a per-shape code (the highest-priority shape covering a pixel wins, as later painting does); activity is summed over shapes.
Results equal the per-shape reference up to float rounding (tests/test_phantom.py).
"""
from __future__ import annotations

import numpy as np

from bonepatch.data.phantom.shapes import DISC_DIP


_ROW = np.repeat(np.arange(8), 8)  # tile pixel p = 8 * row + col
_COL = np.tile(np.arange(8), 8)
_ROWF, _COLF = _ROW.astype(np.float32), _COL.astype(np.float32)


def _span(lo, hi, reach, size):
    """Clipped integer range [a, b) of pixels within ``reach`` of [lo, hi]."""
    a = np.clip(np.floor(lo - reach), 0, size).astype(np.int64)
    b = np.clip(np.ceil(hi + reach) + 1, 0, size).astype(np.int64)
    return a, np.maximum(a, b)


def _grid(n_r, n_c):
    """Enumerate (item, r, c) over per-item grids of n_r x n_c cells."""
    n = n_r * n_c
    item = np.repeat(np.arange(len(n)), n)
    k = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
    return item, k // np.maximum(n_c[item], 1), k % np.maximum(n_c[item], 1)


def _tubes(tubes, h, w):
    """Tile/segment pairs of tubes, sorted by tile: per-pair float32 parameters, pair -> tile
    index, and per tile (shape index, y, x)."""
    c = np.array([len(s.pts) for s in tubes])
    pts = np.concatenate([s.pts for s in tubes])
    rad = np.concatenate([np.asarray(s.rad, np.float64).reshape(-1) for s in tubes])
    upt = np.concatenate([np.asarray(s.upt, np.float64).reshape(-1) for s in tubes])
    nseg = np.maximum(c - 1, 1)
    sid = np.repeat(np.arange(len(tubes)), nseg)
    a = np.repeat(np.cumsum(c) - c, nseg) + np.arange(nseg.sum()) - np.repeat(np.cumsum(nseg) - nseg, nseg)
    b = a + (c[sid] > 1)
    pad = np.array([s.pad for s in tubes], np.float64)[sid]
    (ax, ay), (bx, by) = pts[a].T, pts[b].T
    reach = np.maximum(rad[a], rad[b]) + pad + 1
    y0, y1 = _span(np.minimum(ay, by), np.maximum(ay, by), reach, h)
    x0, x1 = _span(np.minimum(ax, bx), np.maximum(ax, bx), reach, w)
    first = np.cumsum(nseg) - nseg  # tile grid of each tube: origin at its box corner
    gy, gx = np.minimum.reduceat(y0, first)[sid], np.minimum.reduceat(x0, first)[sid]
    r0, c0 = (y0 - gy) // 8, (x0 - gx) // 8
    nr = np.where(y1 > y0, -(-(y1 - gy) // 8) - r0, 0)
    nc = np.where(x1 > x0, -(-(x1 - gx) // 8) - c0, 0)
    seg, r, cc = _grid(nr, nc)  # (segment, tile) pairs
    r, cc = r + r0[seg], cc + c0[seg]
    dx, dy = bx - ax, by - ay
    ll = dx * dx + dy * dy
    inv = np.divide(1.0, ll, out=np.zeros_like(ll), where=ll > 0)
    # drop pairs whose tile lies beyond the footprint (no pixel centre is 5 px off the tile's)
    ox, oy = gx[seg] + 8 * cc + 3.5 - ax[seg], gy[seg] + 8 * r + 3.5 - ay[seg]
    t = np.clip(ox * (dx * inv)[seg] + oy * (dy * inv)[seg], 0, 1)
    keep = np.hypot(ox - t * dx[seg], oy - t * dy[seg]) <= (reach - 1)[seg] + 5
    seg, r, cc = seg[keep], r[keep], cc[keep]
    if not len(seg):  # every tube off the frame
        return np.zeros((0, 11), np.float32), np.zeros(0, np.int64), *(np.zeros(0, np.int64),) * 3
    key = (sid[seg] << 40) + (r << 20) + cc
    order = np.argsort(key, kind="stable")
    seg, key = seg[order], key[order]
    new = np.r_[True, key[1:] != key[:-1]]
    ty, tx = gy[seg] + 8 * r[order], gx[seg] + 8 * cc[order]
    par = np.stack([tx - ax[seg], ty - ay[seg], *(v[seg] for v in (
        dx * inv, dy * inv, dx, dy, rad[a], rad[b] - rad[a], upt[a], upt[b] - upt[a], pad))], 1)
    start = np.flatnonzero(new)
    return par.astype(np.float32), np.cumsum(new) - 1, sid[seg[start]], ty[start], tx[start]


def _tube_tiles(par, tile, t0, t1, p0, p1):
    """q, ql, u (tiles t0..t1, 64) of the pairs p0..p1 (those of these tiles)."""
    ox, oy, dxi, dyi, dx, dy, ra, dr, ua, du, pad = (v[:, None] for v in par[p0:p1].T)
    px, py = ox + _COLF, oy + _ROWF
    t = px * dxi
    t += py * dyi
    np.clip(t, 0, 1, out=t)
    px -= t * dx
    py -= t * dy
    px *= px
    py *= py
    px += py
    d = np.sqrt(px, out=px)
    rr = t * dr
    rr += ra
    u = np.multiply(t, du, out=t)
    u += ua
    ql = np.divide(d, rr + pad) if np.any(pad) else None
    q = np.divide(d, rr, out=rr)
    if p1 - p0 > t1 - t0:  # tiles touched by several segments: keep the least q (first on ties)
        tl = tile[p0:p1] - t0
        first = np.flatnonzero(np.r_[True, tl[1:] != tl[:-1]])
        nth = np.arange(p1 - p0) - np.repeat(first, np.diff(np.r_[first, p1 - p0]))
        qm, um, qlm = q[first], u[first], None if ql is None else ql[first]
        for j in range(1, int(nth.max()) + 1):
            k = np.flatnonzero(nth == j)
            tk = tl[k]
            better = q[k] < qm[tk]
            qm[tk] = np.where(better, q[k], qm[tk])
            um[tk] = np.where(better, u[k], um[tk])
            if qlm is not None:
                qlm[tk] = np.minimum(qlm[tk], ql[k])
        q, u, ql = qm, um, qlm
    return q, (q if ql is None else ql), u


def _ellipses(ells, h, w):
    """Tiles of ellipses: per-tile float32 parameters and (shape index, y, x)."""
    p = np.array([[*s.pts[0], *s.rad, s.angle, s.pad, float(s.upt)] for s in ells])
    cx, cy, ea, eb, ang, pad, upt = p.T
    reach = np.maximum(ea, eb) + pad + 1
    y0, y1 = _span(cy, cy, reach, h)
    x0, x1 = _span(cx, cx, reach, w)
    e, r, c = _grid(-(-(y1 - y0) // 8), -(-(x1 - x0) // 8))
    ty, tx = y0[e] + 8 * r, x0[e] + 8 * c
    par = np.stack([tx - cx[e], ty - cy[e], *(v[e] for v in (
        np.cos(ang), np.sin(ang), 1 / ea, 1 / eb, 1 / (ea + pad), 1 / (eb + pad), upt))], 1)
    return par.astype(np.float32), bool(np.any(pad)), e, ty, tx


def _ellipse_tiles(par, padded, t0, t1):
    ox, oy, cs, sn, ia, ib, ial, ibl, u = (v[:, None] for v in par[t0:t1].T)
    px, py = ox + _COLF, oy + _ROWF
    xr = px * cs
    xr += py * sn
    yr = py * cs
    yr -= px * sn
    q = _norm(xr, yr, ia, ib)
    return q, (_norm(xr, yr, ial, ibl) if padded else q), u


def _norm(xr, yr, ia, ib):
    """sqrt((xr * ia)^2 + (yr * ib)^2)."""
    x, y = xr * ia, yr * ib
    x *= x
    y *= y
    x += y
    return np.sqrt(x, out=x)


def _polys(polys, idx, h, w):
    """Convex polygons -> flat (shape index, y, x, q, u) of their padded footprint; q is 0
    inside, 2 in the padding. Each row's footprint is an x interval (intersection of the
    edges' half-planes), found per row and edge for all polygons at once (vertex lists padded
    by repeating the last vertex: zero-length edges constrain nothing)."""
    boxes = [s.bbox(h, w) for s in polys]
    keep = [k for k, bx in enumerate(boxes) if bx is not None]
    if not keep:
        return [np.zeros(0, np.int64)] * 3 + [np.zeros(0, np.float32)] * 2
    nv = max(len(polys[k].pts) for k in keep)
    p = np.stack([np.concatenate([polys[k].pts, np.repeat(polys[k].pts[-1:], nv - len(polys[k].pts), 0)])
                  for k in keep])  # (P, V, 2)
    box = np.array([boxes[k] for k in keep])  # (P, 4) y0, y1, x0, x1
    pad = np.array([polys[k].pad for k in keep])
    upt = np.array([float(polys[k].upt) for k in keep], np.float32)
    sid = np.asarray(idx)[keep]
    nxt = np.roll(p, -1, axis=1)
    area2 = np.sum(p[..., 0] * nxt[..., 1] - nxt[..., 0] * p[..., 1], 1)
    sg = np.where(area2 > 0, 1.0, -1.0)[:, None]
    e = nxt - p
    n = np.hypot(e[..., 0], e[..., 1])
    n[n == 0] = 1.0
    ak = -sg * e[..., 1]  # (P, V); signed distance to edge k: (a_k * x + b_k(y)) / n_k
    nrow = box[:, 1] - box[:, 0]
    pr = np.repeat(np.arange(len(keep)), nrow)  # polygon of each row
    y = box[pr, 0] + np.arange(nrow.sum()) - np.repeat(np.cumsum(nrow) - nrow, nrow)
    bk = sg[pr] * (e[pr, :, 0] * (y[:, None] - p[pr, :, 1]) + e[pr, :, 1] * p[pr, :, 0])  # (R, V)
    akr, nr = ak[pr], n[pr]
    x0, x1 = box[pr, 2], box[pr, 3]
    spans = []
    for m in (np.zeros(len(pr)), pad[pr]):  # inside (q = 0), padded footprint (ql <= 1)
        c = -m[:, None] * nr - bk  # need ak * x >= c
        with np.errstate(divide="ignore", invalid="ignore"):
            bound = c / akr
        lo = np.max(np.where(akr > 0, bound, -np.inf), 1, initial=-np.inf)
        hi = np.min(np.where(akr < 0, bound, np.inf), 1, initial=np.inf)
        flat_ok = np.all((akr != 0) | (c <= 0), 1)
        lo = np.where(flat_ok, np.maximum(np.ceil(lo), x0), x1)
        spans.append((lo.astype(np.int64), np.minimum(np.floor(hi), x1 - 1).astype(np.int64)))
    (ilo, ihi), (llo, lhi) = spans
    cnt = np.maximum(lhi - llo + 1, 0)
    row = np.repeat(np.arange(len(pr)), cnt)
    x = llo[row] + np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    q = np.where((x >= ilo[row]) & (x <= ihi[row]), 0.0, 2.0).astype(np.float32)
    return sid[pr[row]], y[row], x, q, upt[pr[row]]


def _paint(s, ty, tx, q, ql, u, shapes, weights, ranks, act, rank, h, w, binned):
    """Labels (max rank code) and activity (added) of a chunk of tiles, in place."""
    over = bool(ty.max() + 8 > h or tx.max() + 8 > w)  # tiles crossing the frame edge
    if ranks is not None:
        rows = np.flatnonzero(ranks[s])
        f = np.flatnonzero(ql[rows] <= 1)
        tr, p = rows[f >> 6], f & 63
        y, x = ty[tr] + _ROW[p], tx[tr] + _COL[p]
        k = np.flatnonzero((y < h) & (x < w)) if over else slice(None)
        np.maximum.at(rank, (y * w + x)[k], ranks[s[tr]][k])
    f = np.flatnonzero(q <= 1)
    tr, p = f >> 6, f & 63
    qf = q.reshape(-1)[f]
    prof = np.multiply(qf, qf)
    np.subtract(1, prof, out=prof)
    np.maximum(prof, 0, out=prof)
    np.sqrt(prof, out=prof)
    prof *= 0.7
    prof += 0.3
    sf = s[tr]
    shell = shapes.shell[sf]
    k = np.flatnonzero(shell)
    if len(k):  # bright rim of relative width `shell` over a fainter interior
        prof[k] = 0.35 + 0.65 * np.exp(-((1 - qf[k]) / shell[k]) ** 2)
    y, x = ty[tr] + _ROW[p], tx[tr] + _COL[p]
    per = shapes.period[sf]
    k = np.flatnonzero(per[:, 0])
    if len(k):  # periodic activity dips (disc gaps)
        gap = (0.5 + 0.5 * np.cos((2 * np.pi) * (y[k] - per[k, 1]) / per[k, 0])) ** 6
        prof[k] *= (1 - DISC_DIP * gap).astype(np.float32)
    prof *= (u.reshape(-1)[f] if u.shape[1] > 1 else u[tr, 0])
    prof *= weights[sf]
    k = np.flatnonzero((y < h) & (x < w)) if over else slice(None)
    pix = (y >> 1) * (w // 2) + (x >> 1) if binned else y * w + x
    np.add.at(act, pix[k], prof[k].astype(np.float64))


class _Table:
    def __init__(self, shapes):
        self.shell = np.array([sh.shell for sh in shapes], np.float32)
        self.period = np.array([sh.period or (0.0, 0.0) for sh in shapes])


CHUNK = 384  # tiles per numpy pass: keeps temporaries ~100 kB (no page faults)


def rasterise_all(shapes, weights, ranks, h: int, w: int, binned: bool):
    """Rasterise ``shapes`` on an (h, w) frame (see the module docstring).

    Args:
        shapes: list of :class:`shapes.Shape`.
        weights: per-shape activity factor (view attenuation).
        ranks: per-shape uint8 label code, higher wins (0 = paints no label), or None.
        binned: sum the activity into the 2x2-binned (h/2, w/2) frame.
    Returns:
        activity (flat float64, (h/2)*(w/2) or h*w) and the (h*w,) uint8 map of the highest
        code painted per pixel (None if ``ranks`` is None).
    """
    kind = np.array([sh.kind for sh in shapes])
    tab = _Table(shapes)
    weights = np.asarray(weights, np.float32)
    ranks = None if ranks is None else np.asarray(ranks, np.uint8)
    act = np.zeros((h // 2) * (w // 2) if binned else h * w)
    rank = None if ranks is None else np.zeros(h * w, np.uint8)
    args = (tab, weights, ranks, act, rank, h, w, binned)
    idx = np.flatnonzero(kind == "tube")
    if len(idx):
        par, tile, s, ty, tx = _tubes([shapes[i] for i in idx], h, w)
        pstart = np.r_[np.flatnonzero(np.r_[True, tile[1:] != tile[:-1]]), len(tile)]
        for t0 in range(0, len(s), CHUNK):
            t1 = min(t0 + CHUNK, len(s))
            q, ql, u = _tube_tiles(par, tile, t0, t1, pstart[t0], pstart[t1])
            _paint(idx[s[t0:t1]], ty[t0:t1], tx[t0:t1], q, ql, u, *args)
    idx = np.flatnonzero(kind == "ellipse")
    if len(idx):
        par, padded, s, ty, tx = _ellipses([shapes[i] for i in idx], h, w)
        for t0 in range(0, len(s), CHUNK):
            t1 = min(t0 + CHUNK, len(s))
            q, ql, u = _ellipse_tiles(par, padded, t0, t1)
            _paint(idx[s[t0:t1]], ty[t0:t1], tx[t0:t1], q, ql, u, *args)
    idx = np.flatnonzero(kind == "poly")
    if len(idx):
        ps, py, px, pq, pu = _polys([shapes[i] for i in idx], idx, h, w)
        if ranks is not None:
            np.maximum.at(rank, py * w + px, ranks[ps])
        k = np.flatnonzero(pq <= 1)  # polygon profile: 1
        pix = (py >> 1) * (w // 2) + (px >> 1) if binned else py * w + px
        np.add.at(act, pix[k], (pu[k] * weights[ps[k]]).astype(np.float64))
    return act, rank
