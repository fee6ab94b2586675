"""predict.py on exports as people have them: inverted, landscape, truncated, side by side with a
caption, other sizes, noise and empty; refusal checks; resume.

The consistency tests compare the model's map of a phantom view with its map of the same view
transformed (the transform applied to the first map): with an untrained model the maps mean
nothing anatomically, but they agree only if every step maps the pixels exactly.
"""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from bonepatch import predict as predict_mod
from bonepatch import predict_io as pio
from bonepatch import predict_resume
from bonepatch.anatomy import CLASS_IDS, KEYPOINT_IDS
from bonepatch.checkpoint import load_model
from bonepatch.data.io import ScanView
from bonepatch.data.phantom import PhantomConfig, render
from bonepatch.models.pipeline import PipelineOutput
from bonepatch.geometry.resize import fit_letterbox, letterbox, letterbox_points, resize_counts, resize_labels, \
    unletterbox, unletterbox_points
from bonepatch.predict import PredictError, Predictor, predict, segment_image
from bonepatch.predict_checks import CheckOptions, anatomy_order, check_prediction
from bonepatch.predict_frame import ViewFrame
from bonepatch.predict_layout import body_box, edge_cuts, foreground
from bonepatch.predict_prepare import PrepareOptions

SIZE = (256, 64)  # the tiny checkpoint's frame
CFG = PhantomConfig(height=256, width=64, mm_per_px=9.6)
DICE = {}  # measured consistency


@pytest.fixture(scope="module")
def predictor(tiny_ckpt):
    return Predictor(load_model(tiny_ckpt)[0], SIZE)


@pytest.fixture(scope="module")
def pair():
    """(anterior, posterior) float32 (256, 64) counts of one whole-body phantom subject."""
    views = tuple(np.asarray(render(4, i, CFG)["image"], np.float32) for i in (4, 5))  # subject 2
    assert not any(edge_cuts(v)[0] or edge_cuts(v)[1] for v in views)  # head and feet inside the frame
    return views


class BodyAtlas(torch.nn.Module):
    """A stand-in model that commutes with shifts and scale changes, which an untrained pipeline
    does not (its patch boxes sit at fixed prior places: a 1-pixel shift alone costs it ~0.4 Dice):
    body pixels labelled by their height within the body's extent (skull at the top... femurs)."""

    def forward(self, image, keypoints=None):
        x = F.avg_pool2d(image, 5, 1, 2, count_include_pad=False)
        body = x > 0.05 * x.flatten(1).quantile(0.999, dim=1)[:, None, None, None]  # (B, 1, H, W)
        y = torch.arange(image.shape[-2], dtype=torch.float32)[:, None]
        rows = body.any(-1, keepdim=True)  # (B, 1, H, 1)
        top = torch.where(rows, y, torch.inf).amin(-2, keepdim=True)
        bottom = torch.where(rows, y, -torch.inf).amax(-2, keepdim=True)
        t = (y - top) / (bottom - top).clamp_min(1)
        band = torch.bucketize(t, torch.tensor([0.12, 0.16, 0.34, 0.46, 0.56, 0.8]))
        ids = torch.where(body, torch.tensor([1, 2, 3, 9, 11, 12, 0])[band], 0)[:, 0]  # (B, H, W)
        return PipelineOutput(F.one_hot(ids, 13).permute(0, 3, 1, 2).float() * 10)


def segment(predictor, image, view="anterior", **options):
    """[(prepared view, its label map on the input's grid, None if flagged)] as predict() computes them
    (the refusal checks off: an untrained model's maps are not anatomy)."""
    results = segment_image(predictor, ScanView(image, view, None, "test"), PrepareOptions(**options),
                            CheckOptions(refuse_unsure=False))
    return [(r.prepared, None if r.labels is None else r.prepared.frame.to_input(r.labels)) for r in results]


def dice(a, b) -> float:
    """Mean Dice over the bone classes present in either map."""
    classes = [c for c in np.union1d(np.unique(a), np.unique(b)) if c > 0]
    return float(np.mean([2 * ((a == c) & (b == c)).sum() / ((a == c).sum() + (b == c).sum()) for c in classes]))


def _agree(name, got, want, threshold):
    DICE[name] = d = dice(got, want)
    print(f"self-consistency {name}: mean Dice {d:.4f}")  # the measured numbers (pytest -s)
    assert d >= threshold, f"{name}: mean Dice {d:.3f} < {threshold}"


def test_letterbox_inverse_is_exact():
    rng = np.random.default_rng(0)
    for src, dst, kw in (((150, 64), (256, 64), {"vertical": "top"}), ((512, 128), (256, 64), {}),
                         ((256, 100), (256, 64), {"scale": 1.0, "centre": (40.0, 0.0)}), ((300, 64), (256, 64), {})):
        box = fit_letterbox(src, dst, **kw)
        pts = rng.uniform(0, 1, (20, 2)) * [src[1] - 1, src[0] - 1]
        assert np.allclose(unletterbox_points(letterbox_points(pts, box), box), pts, atol=1e-4)
        img = rng.poisson(5, src).astype(np.float32)
        framed = letterbox(img, box)
        assert framed.shape == dst
        if box.inner[0] <= dst[0] and box.inner[1] <= dst[1]:  # padded only: every count kept
            assert framed.sum() == pytest.approx(img.sum(), rel=1e-4)
    box = fit_letterbox((150, 64), (256, 64), vertical="bottom")  # pads above, scale 1
    assert (box.inner, box.top, box.left, box.scale) == ((150, 64), 106, 0, 1.0)
    x = np.random.default_rng(1).random((3, 150, 64)).astype(np.float32)
    assert np.array_equal(unletterbox(letterbox(x, box), box), x)  # arrays back exactly at scale 1
    wide = np.random.default_rng(2).random((256, 100)).astype(np.float32)
    crop = fit_letterbox(wide.shape, (256, 64), scale=1.0, centre=(40.0, 128.0))  # columns 8..71 kept
    assert crop.left == -8 and np.array_equal(letterbox(wide, crop), wide[:, 8:72])
    back = unletterbox(letterbox(wide, crop), crop, fill=-1.0)
    assert np.array_equal(back[:, 8:72], wide[:, 8:72]) and (back[:, :8] == -1).all() and (back[:, 72:] == -1).all()


def test_view_frame_maps_points_and_arrays_back():
    rng = np.random.default_rng(0)
    img = rng.random((30, 50))
    for k in (-1, 0, 1, 2):
        turned = np.rot90(img[2:28, 5:45], k)
        frame = ViewFrame(img.shape, (2, 28, 5, 45), k, (1, turned.shape[0] - 1, 3, turned.shape[1] - 2))
        view = frame.from_input(img)
        ys, xs = np.mgrid[:view.shape[0], :view.shape[1]]
        q = frame.points_to_input(np.stack([xs.ravel(), ys.ravel()], 1)).round().astype(int)
        assert np.array_equal(img[q[:, 1], q[:, 0]], view.ravel())
        back = frame.to_input(view, fill=np.nan)
        assert np.array_equal(back[~np.isnan(back)], img[~np.isnan(back)]) and (~np.isnan(back)).sum() == view.size


def test_inverted_and_landscape_come_back_the_same(predictor, pair):
    image = pair[0]
    (_, ref), = segment(predictor, image)
    (pv, got), = segment(predictor, image.max() - image)
    assert pv.inverted and "inverted" in pv.notes[0]
    _agree("inverted", got, ref, 0.9)
    for k, head in ((1, "left"), (-1, "right")):  # counter-clockwise: the head ends up on the left
        (pv, got), = segment(predictor, np.rot90(image, k).copy())
        assert pv.rotation == 90 * k and f"head on the {head}" in pv.notes[0]
        _agree(f"landscape_head_{head}", got, np.rot90(ref, k), 0.9)
    (pv, _), = segment(predictor, np.rot90(image, 1).copy(), orientation="check")
    assert pv.flag.startswith("landscape") and "orientation=head_left" in pv.flag
    (pv, _), = segment(predictor, image.max() - image, polarity="normal")  # forced: left as it is
    assert not pv.inverted


def test_truncated_views_keep_their_scale(predictor, pair):
    image = pair[0]
    (_, ref), = segment(predictor, image)
    for name, rows, pad in (("truncated_bottom", slice(0, 154), "below"), ("truncated_top", slice(102, 256), "above")):
        (pv, got), = segment(predictor, image[rows].copy())
        assert pv.fit.scale == 1.0 and f"padded {pad}" in pv.notes[-1], pv.notes
        _agree(name, got, ref[rows], 0.8)


def test_side_by_side_with_caption_is_split_and_named(predictor, pair):
    views = segment(predictor, np.concatenate(pair, 1))  # a plain export: two panels of 256x64
    (_, ref_a), = segment(predictor, pair[0])
    (_, ref_p), = segment(predictor, pair[1], view="posterior")
    assert [(pv.view.view, pv.panel, pv.view.flipped) for pv, _ in views] == [
        ("anterior", 0, False), ("posterior", 1, True)]
    _agree("side_by_side_anterior", views[0][1][:, :64], ref_a, 0.9)
    _agree("side_by_side_posterior", views[1][1][:, 64:], ref_p, 0.9)
    assert (views[0][1][:, 64:] == 0).all() and (views[1][1][:, :64] == 0).all()  # each view on its panel
    swapped = segment(predictor, np.concatenate(pair, 1), panel_views=("posterior", "anterior"))
    assert [pv.view.view for pv, _ in swapped] == ["posterior", "anterior"]
    caption = Image.new("F", (130, 20), 0.0)  # with a caption strip and a separator line
    ImageDraw.Draw(caption).text((6, 4), "ANT     POST", fill=float(pair[0].max()))
    body = np.concatenate([pair[0], np.full((256, 2), pair[0].max(), np.float32), pair[1]], 1)
    screenshot = np.concatenate([np.asarray(caption), body], 0)  # (276, 130)
    atlas = Predictor(BodyAtlas(), SIZE)  # panels move by a few pixels: a shift-equivariant model
    (_, ref_a), = segment(atlas, pair[0])
    (_, ref_p), = segment(atlas, pair[1], view="posterior")
    views = segment(atlas, screenshot)
    assert [pv.view.view for pv, _ in views] == ["anterior", "posterior"]
    assert "caption strip cropped" in views[0][0].notes[0] and "2 line columns" in views[0][0].notes[0]
    (x0, y0, x1, y1), (u0, v0, u1, v1) = (pv.frame.region() for pv, _ in views)
    assert (x0, x1, u0, u1) == (0, 65, 65, 130) and 4 <= y0 <= 20 and y1 == v1 == 276
    _agree("side_by_side_caption_anterior", views[0][1][20:, :64], ref_a, 0.9)
    _agree("side_by_side_caption_posterior", views[1][1][20:, 66:], ref_p, 0.9)


@pytest.mark.parametrize("size", [(512, 128), (128, 32), (384, 96)])
def test_other_sizes_same_map(pair, size):
    atlas = Predictor(BodyAtlas(), SIZE)  # resampling moves every pixel: a shift-equivariant model
    (_, ref), = segment(atlas, pair[0])
    (pv, got), = segment(atlas, resize_counts(pair[0], size))
    assert pv.fit.inner == SIZE and not pv.notes
    _agree(f"size_{size[0]}x{size[1]}", got, resize_labels(ref, size), 0.9)


def test_other_aspects_are_padded_or_cropped_not_stretched(predictor, pair):
    wide = np.pad(pair[0], ((0, 0), (20, 30)))  # empty columns: cropped at scale 1, around the body
    (pv, got), = segment(predictor, wide)
    assert pv.fit.scale == 1.0 and "empty columns cropped" in pv.notes[-1]
    c = -pv.fit.left
    y0, y1, x0, x1 = body_box(foreground(wide))
    assert c <= x0 and x1 <= c + 64  # centred on the body (not the frame): all of it kept
    ref = np.zeros_like(got)
    ref[:, c:c + 64] = predictor([ScanView(wide[:, c:c + 64].copy(), "anterior", None, "t")])[0].labels
    _agree("wide_margins_crop", got, ref, 0.99)
    atlas = Predictor(BodyAtlas(), SIZE)
    (_, ref), = segment(atlas, pair[0])
    (pv, got), = segment(atlas, wide)
    _agree("wide_margins_atlas", got, np.pad(ref, ((0, 0), (20, 30))), 0.9)
    tall = np.pad(pair[0], ((0, 64), (0, 0)))  # taller than 4:1: scaled down by one factor, padded at the sides
    (pv, got), = segment(atlas, tall)
    assert pv.fit.inner == (256, 51) and pv.fit.left == 6 and "padded at the sides" in pv.notes[-1]
    _agree("tall_atlas", got, np.pad(ref, ((0, 64), (0, 0))), 0.8)


def test_exports_end_to_end(tiny_ckpt, tmp_path, pair):
    d = tmp_path / "in"
    d.mkdir()
    eight = (pair[0] / pair[0].max() * 255).round().astype(np.uint8)
    Image.fromarray(255 - eight).save(d / "inverted.png")  # dark bone on white, 8-bit
    np.save(d / "landscape.npy", np.rot90(pair[0], -1).copy())  # head on the right
    Image.fromarray(np.concatenate([eight, (pair[1] / pair[1].max() * 255).astype(np.uint8)], 1)).save(d / "pair.png")
    np.save(d / "truncated.npy", pair[0][:150])
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    rows = predict(tiny_ckpt, str(d), tmp_path / "out", progress=False, refuse_unsure=False)
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before  # inputs untouched
    got = {(r["outputs"], r["status"], r["inverted"], r["rotation"], r["panel"]) for r in rows}
    assert got == {("inverted_unknown", "ok", True, 0, ""), ("landscape_unknown", "ok", False, -90, ""),
                   ("pair_anterior", "ok", False, 0, 0), ("pair_posterior", "ok", False, 0, 1),
                   ("truncated_unknown", "ok", False, 0, "")}
    by = {r["outputs"]: r for r in rows}
    assert "inverted back" in by["inverted_unknown"]["notes"] and "padded below" in by["truncated_unknown"]["notes"]
    assert by["pair_posterior"]["region"] == "64 0 128 256" and by["landscape_unknown"]["height"] == 256
    out = tmp_path / "out"
    for prefix, shape in (("inverted_unknown", (256, 64)), ("landscape_unknown", (64, 256)),
                          ("pair_anterior", (256, 128)), ("truncated_unknown", (150, 64))):
        assert np.asarray(Image.open(out / f"{prefix}_labels.png")).shape == shape  # the input's grid
    kp = json.loads((out / "truncated_unknown_keypoints.json").read_text())
    assert kp["region"] == [0, 0, 64, 150] and all("inside" in k for k in kp["keypoints"])
    with open(out / "summary.csv", newline="") as f:
        assert [r["outputs"] for r in csv.DictReader(f)] == [r["outputs"] for r in rows]


def _noise_cases(d):
    rng = np.random.default_rng(3)
    cases = {"empty": np.zeros((256, 64)), "poisson": rng.poisson(5, (256, 64)),
             "sparse": rng.poisson(0.02, (1024, 256)) * 20,  # a few hundred stray counts
             "uniform8bit": rng.integers(0, 256, (512, 128)), "inverted_noise": 255 - rng.poisson(3, (256, 64)),
             "landscape_noise": rng.poisson(4, (64, 256))}
    for name, a in cases.items():
        np.save(d / f"{name}.npy", np.asarray(a, np.float32))
    return sorted(cases)


def test_noise_and_empty_are_flagged_with_overlay_only(tiny_ckpt, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    names = _noise_cases(d)
    rows = predict(tiny_ckpt, str(d), tmp_path / "out", progress=False)
    assert [r["status"] for r in rows] == ["flag"] * len(names), [(r["input"], r["reason"]) for r in rows]
    assert all(r["reason"].split(":")[0] in ("no body found", "low counts") for r in rows)
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == sorted([f"{n}_unknown_overlay.png" for n in names] + ["predict_run.json", "summary.csv"])


def test_checks_pass_phantom_truth_and_refuse_impossible_maps():
    opts = CheckOptions()
    for i in range(8):  # true maps and keypoints of phantom views, truncated ones included
        s = render(11, i, PhantomConfig(height=512, width=128, mm_per_px=4.8, truncate_prob=0.5))
        kp, mask = np.asarray(s["keypoints"]), np.asarray(s["mask"], np.uint8)
        assert check_prediction(mask, kp[:, :2], kp[:, 2], kp[:, 2] > 0, opts) == "", i
    s = render(11, 0, PhantomConfig(height=512, width=128, mm_per_px=4.8))
    kp, mask = np.asarray(s["keypoints"]), np.asarray(s["mask"], np.uint8)
    assert anatomy_order(mask[::-1], None, None, opts).startswith("impossible anatomy: skull below")
    swapped = kp.copy()
    swapped[[KEYPOINT_IDS["skull_top"], KEYPOINT_IDS["sacrum_tip"]]] = swapped[[KEYPOINT_IDS["sacrum_tip"],
                                                                                KEYPOINT_IDS["skull_top"]]]
    assert "keypoint skull_top below skull_base" in check_prediction(mask, swapped[:, :2], swapped[:, 2],
                                                                     swapped[:, 2] > 0, opts)
    low = np.full(16, 0.05)
    reason = check_prediction(mask, kp[:, :2], low, np.ones(16, bool), opts)
    assert reason.startswith("low keypoint confidence: 0 of 16")
    mixed = mask.copy()
    mixed[mask == CLASS_IDS["femur"]] = CLASS_IDS["skull"]  # skull where the femurs are
    assert "impossible anatomy" in check_prediction(mixed, None, None, None, opts)
    assert check_prediction(mixed, None, None, None, CheckOptions(refuse_unsure=False)) == ""


def _summary(out):
    with open(out / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_resume_writes_each_view_once(tiny_ckpt, tmp_path, pair, monkeypatch):
    d, out = tmp_path / "in", tmp_path / "out"
    d.mkdir()
    for i in range(5):
        np.save(d / f"case{i}_ant.npy", pair[0] * (1 + i / 10))
    writes = []
    real_png = pio.write_png
    monkeypatch.setattr(pio, "write_png", lambda p, *a, **k: (writes.append(p.name), real_png(p, *a, **k)))
    real_read = predict_mod.read_views

    def killed_at_case3(f, **kw):
        if f.name.startswith("case3"):
            raise KeyboardInterrupt
        return real_read(f, **kw)

    monkeypatch.setattr(predict_mod, "read_views", killed_at_case3)  # a kill: no summary, journal stays
    monkeypatch.setattr(pio, "write_csv", lambda *a, **k: None)
    monkeypatch.setattr(predict_resume.Journal, "close", lambda self, remove: self._f.close())
    opts = {"progress": False, "refuse_unsure": False, "batch_size": 2}
    with pytest.raises(KeyboardInterrupt):
        predict(tiny_ckpt, str(d), out, **opts)
    assert not (out / "summary.csv").exists() and (out / predict_resume.JOURNAL).is_file()
    assert [json.loads(r)["input"].split("/")[-1] for r in (out / predict_resume.JOURNAL).read_text().splitlines()] == [
        "case0_ant.npy", "case1_ant.npy"]  # the first batch of two was done
    (out / "case1_ant_anterior_labels.png").unlink()  # case1's files not all there: it is redone
    monkeypatch.undo()
    monkeypatch.setattr(pio, "write_png", lambda p, *a, **k: (writes.append(p.name), real_png(p, *a, **k)))
    with pytest.raises(PredictError, match="interrupted run"):
        predict(tiny_ckpt, str(d), out, **opts)  # not without resume=true
    with pytest.raises(PredictError, match="tta_flip"):
        predict(tiny_ckpt, str(d), out, resume=True, tta_flip=True, **opts)
    rows = predict(tiny_ckpt, str(d), out, resume=True, **opts)
    labels = [w for w in writes if w.endswith("_labels.png")]
    assert sorted(labels) == [f"case{i}_ant_anterior_labels.png" for i in (0, 1, 1, 2, 3, 4)]  # case1 twice: redone
    assert [(r["input"].split("/")[-1], r["status"]) for r in _summary(out)] == [
        (f"case{i}_ant.npy", "ok") for i in range(5)] == [(r["input"].split("/")[-1], r["status"]) for r in rows]
    assert not (out / predict_resume.JOURNAL).exists()
    before = len(writes)
    assert len(predict(tiny_ckpt, str(d), out, resume=True, **opts)) == 5 and len(writes) == before  # all done
    assert json.loads((out / "predict_run.json").read_text())["options"]["tta_flip"] is False
    np.save(d / "case5_ant.npy", pair[0])
    monkeypatch.setattr(predict_mod, "read_views", lambda f, **kw: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C in a resumed run: what was there stays listed
        predict(tiny_ckpt, str(d), out, resume=True, **opts)
    assert [r["outputs"] for r in _summary(out)] == [f"case{i}_ant_anterior" for i in range(5)]

