"""Geometry: heatmap / SimCC targets and decoders, boxes, crop and paste."""
import numpy as np
import pytest
import torch

from bonepatch.anatomy import DEFAULT_PATCHES, NUM_KEYPOINTS
from bonepatch.geometry import heatmaps as hm
from bonepatch.geometry.boxes import (DEFAULT_KEYPOINT_PRIOR, boxes_from_keypoints, boxes_to_cxcywh,
                                      cxcywh_to_boxes, jitter_boxes)
from bonepatch.geometry.crop_paste import CropPaste, crop_labels, crop_patches, paste_patches
from component_tester import check_component

H, W = 1024, 256


def _prior_kp(b=1):
    return (DEFAULT_KEYPOINT_PRIOR[None] * torch.tensor([W, H])).expand(b, -1, -1).clone()


def _int_boxes():
    """(2, 3, 4, 2) overlapping integer boxes, one partly outside the 64 x 48 image."""
    c = torch.tensor([[[20., 20., 24, 30], [30., 35., 24, 30], [44., 10., 16, 16]],
                      [[10., 50., 16, 24], [24., 30., 24, 24], [5., 5., 24, 24]]])
    return cxcywh_to_boxes(c)


def test_crop_paste_roundtrip_exact():
    img = torch.rand(2, 1, 64, 48)
    c = boxes_to_cxcywh(_int_boxes())
    boxes1 = cxcywh_to_boxes(torch.cat([c[..., :2], torch.full((2, 3, 2), 24.)], -1))  # integer corners
    crops = crop_patches(img, boxes1, (25, 25))  # 25 samples over 24 px: 1:1, no resampling loss
    for method in ("loop", "scatter"):
        out, cov = paste_patches(crops, boxes1, (64, 48), return_coverage=True, method=method)
        inside = (cov[:, 0] > 0)
        # crops outside the image are zero and blend with in-image pixels only at the image border
        err = (out - img)[:, 0][inside]
        assert inside.float().mean() > 0.3 and err.abs().max() <= 1e-3, (method, err.abs().max())


def test_crop_paste_smooth_image_default_boxes():
    yy, xx = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    img = (torch.sin(xx / 13) + torch.cos(yy / 17))[None, None]
    boxes = boxes_from_keypoints(_prior_kp(), None, DEFAULT_PATCHES, (192, 192))
    out, cov = CropPaste((256, 256)).paste(CropPaste((256, 256)).crop(img, boxes), boxes, (H, W), return_coverage=True)
    inside = cov[0, 0] > 0
    inside[:, :2] = inside[:, -2:] = False  # the zero padding bleeds into the image's last pixel
    assert (out - img)[0, 0][inside].abs().max() < 5e-3


def test_paste_methods_agree_and_window_is_local():
    torch.manual_seed(0)
    boxes = boxes_from_keypoints(_prior_kp(2) + torch.randn(2, 16, 2) * 5, None, DEFAULT_PATCHES, (64, 64))
    patches = torch.rand(14, 3, 64, 64)
    w = (torch.rand(14, 3) > 0.3).float()
    a = paste_patches(patches, boxes, (H, W), w, method="loop")
    b = paste_patches(patches, boxes, (H, W), w, method="scatter")
    assert torch.allclose(a, b, atol=1e-5)
    for weights in (w, None):  # the static, sync-free paste (accelerators, torch.compile)
        a, ca = paste_patches(patches, boxes, (H, W), weights, method="loop", return_coverage=True)
        c, cc = paste_patches(patches, boxes, (H, W), weights, method="separable", return_coverage=True)
        assert torch.allclose(a, c, atol=1e-5) and torch.allclose(ca, cc, atol=1e-5) and ca.shape == cc.shape
    assert (a[:, :, 700:] == 0).all()  # below the thighs nothing is pasted


def test_crop_and_paste_gradcheck():
    img = torch.rand(1, 2, 9, 7, dtype=torch.float64)
    boxes = cxcywh_to_boxes(torch.tensor([[[3.13, 4.27, 4.6, 5.3], [4.41, 3.61, 3.7, 4.2]]], dtype=torch.float64))
    check_component(lambda x, b: crop_patches(x, b, (4, 3)), img, boxes, grad_inputs=(0, 1), gradcheck=True)
    patches = torch.rand(2, 2, 4, 3, dtype=torch.float64)
    weights = torch.tensor([[1., 0.], [1., 1.]], dtype=torch.float64)
    check_component(lambda p, b: paste_patches(p, b, (9, 7), weights, method="loop"), patches, boxes,
                    grad_inputs=(0, 1), gradcheck=True)
    check_component(lambda p, b: paste_patches(p, b, (9, 7), method="scatter"), patches, boxes,
                    grad_inputs=(0, 1), gradcheck=True)
    check_component(lambda p, b: paste_patches(p, b, (9, 7), weights, method="separable"), patches, boxes,
                    grad_inputs=(0, 1), gradcheck=True)


def test_crop_matches_kornia_crop_and_resize():
    """The one-grid_sample crop samples exactly where kornia's per-box perspective crop does."""
    from kornia.geometry.transform import crop_and_resize
    torch.manual_seed(0)
    img = torch.rand(2, 3, 64, 48, dtype=torch.float64)
    c = torch.rand(2, 5, 4, dtype=torch.float64) * torch.tensor([48, 64, 40, 40.]) + torch.tensor([0, 0, 3, 3.])
    boxes = cxcywh_to_boxes(c)  # partly outside the image
    stacked = img[:, None].expand(2, 5, 3, 64, 48).reshape(10, 3, 64, 48)
    for mode in ("bilinear", "nearest"):
        ref = crop_and_resize(stacked, boxes.reshape(10, 4, 2), (16, 12), mode=mode, align_corners=True)
        assert torch.allclose(crop_patches(img, boxes, (16, 12), mode), ref, atol=1e-10)


def test_region_boxes_module_is_the_function():
    from bonepatch.geometry.boxes import RegionBoxes
    kp, conf = _prior_kp(3) + torch.randn(3, 16, 2) * 9, torch.rand(3, 16)
    conf[1] = 0  # no confident keypoint: the prior box
    rule = RegionBoxes(DEFAULT_PATCHES, (192, 160), 0.2, 24.0, min_confidence=0.3)
    ref = boxes_from_keypoints(kp, conf, DEFAULT_PATCHES, (192, 160), 0.2, 24.0, image_size=(H, W))
    assert torch.equal(rule(kp, conf, (H, W)), ref) and not rule.state_dict()  # buffers not in checkpoints
    rule.set_margin(0.3)
    assert torch.equal(rule(kp, conf, (H, W)), boxes_from_keypoints(kp, conf, DEFAULT_PATCHES, (192, 160), 0.3, 24.0,
                                                                     image_size=(H, W)))


def test_crop_labels_nearest():
    mask = torch.arange(64 * 48).view(1, 64, 48) % 13
    boxes = _int_boxes()[:1, :1]  # 24 x 30 box at integer corners
    crop = crop_labels(mask, boxes, (31, 25))
    c = boxes_to_cxcywh(boxes)[0, 0]
    y0, x0 = int(c[1] - c[3] / 2), int(c[0] - c[2] / 2)
    assert crop.dtype == torch.long and torch.equal(crop[0], mask[0, y0:y0 + 31, x0:x0 + 25])


def test_bad_boxes():
    img = torch.rand(1, 1, 16, 16)
    with pytest.raises(ValueError, match=">= 2"):
        crop_patches(img, cxcywh_to_boxes(torch.tensor([[[8., 8., 1., 4.]]])), (4, 4))
    with pytest.raises(ValueError, match="NaN"):
        crop_patches(img, torch.full((1, 1, 4, 2), float("nan")), (4, 4))
    with pytest.raises(ValueError, match=r"\(B=1, R, 4, 2\)"):
        crop_patches(img, torch.zeros(1, 4, 2), (4, 4))


@pytest.mark.parametrize("mode", ["soft", "local"])
def test_heatmap_decode_recovers_keypoints(mode):
    torch.manual_seed(0)
    kp = torch.rand(3, NUM_KEYPOINTS, 2) * torch.tensor([W - 40., H - 160.]) + torch.tensor([20., 80.])
    hs, ws = 128, 32  # stride 8 of the image
    g = torch.stack([hm.to_grid(kp[..., 0], W, ws), hm.to_grid(kp[..., 1], H, hs)], -1)
    xy, conf = hm.decode_heatmaps(hm.render_heatmaps(g, (hs, ws), 2.0), mode)
    back = torch.stack([hm.from_grid(xy[..., 0], W, ws), hm.from_grid(xy[..., 1], H, hs)], -1)
    assert (back - kp).abs().max() * ws / W < 0.5 and (conf > 0.9).all()  # within 0.5 heatmap px


@pytest.mark.parametrize("radius", [None, 12])
def test_simcc_decode_recovers_keypoints(radius):
    kp = torch.tensor([[[3.3, 7.9], [100.6, 500.2], [250.2, 1010.7]]])
    bins = (2 * H, 2 * W)
    g = torch.stack([hm.to_grid(kp[..., 0], W, bins[1]), hm.to_grid(kp[..., 1], H, bins[0])], -1)
    tx, ty = hm.render_simcc(g, bins, 4.0)
    assert torch.allclose(tx.sum(-1), torch.ones(1, 3))
    xy, conf = hm.decode_simcc(tx.log(), ty.log(), radius=radius, sigma=4.0)
    back = torch.stack([hm.from_grid(xy[..., 0], W, bins[1]), hm.from_grid(xy[..., 1], H, bins[0])], -1)
    assert (back - kp).abs().max() < 0.5 and (conf > 0.9).all()


def test_boxes_rules():
    kp = _prior_kp(2)
    boxes = boxes_from_keypoints(kp, None, DEFAULT_PATCHES, (192, 128), margin=0.15, min_size=40)
    c = boxes_to_cxcywh(boxes)
    assert boxes.shape == (2, 7, 4, 2)
    assert torch.allclose(c[..., 2] / c[..., 3], torch.tensor(128 / 192), atol=1e-4)  # patch aspect
    assert (c[..., 2:] >= 40 - 1e-4).all()  # min size
    for r, p in enumerate(DEFAULT_PATCHES):  # every keypoint of a region inside its box
        pts = kp[0, p.keypoint_ids]
        assert (pts >= boxes[0, r, 0] - 1e-3).all() and (pts <= boxes[0, r, 2] + 1e-3).all()
    # an invisible wild keypoint does not move the box; all invisible falls back to the prior box
    wild = kp.clone(); wild[:, 0] = torch.tensor([5000., -3000.])
    vis = torch.ones(2, 16); vis[:, 0] = 0
    assert torch.allclose(boxes_from_keypoints(wild, vis), boxes_from_keypoints(kp, vis), atol=1e-3)
    prior = boxes_from_keypoints(torch.zeros(2, 16, 2), torch.zeros(2, 16))
    assert torch.allclose(prior, boxes_from_keypoints(kp, torch.ones(2, 16), tau=1e-3), atol=1.0)


@pytest.mark.parametrize("case", ["one_point", "outside", "invisible", "nan_absent"])
def test_boxes_degenerate_keypoints_finite(case):
    kp = {"one_point": torch.full((2, 16, 2), 100.), "outside": torch.full((2, 16, 2), -5000.),
          "invisible": torch.rand(2, 16, 2) * 100, "nan_absent": torch.full((2, 16, 2), float("nan"))}[case]
    conf = torch.zeros(2, 16) if case in ("invisible", "nan_absent") else torch.ones(2, 16)
    boxes = check_component(lambda k, c: boxes_from_keypoints(k, c, DEFAULT_PATCHES, (64, 64)),
                            kp, conf, grad_inputs=(1,) if case == "nan_absent" else (0, 1))
    assert (boxes_to_cxcywh(boxes)[..., 2:] >= 16).all()


def test_boxes_gradcheck_and_jitter():
    kp = _prior_kp().double() + torch.randn(1, 16, 2, dtype=torch.float64)
    conf = torch.rand(1, 16, dtype=torch.float64) * 0.5 + 0.5
    check_component(lambda k: boxes_from_keypoints(k, conf, DEFAULT_PATCHES[:3], (64, 48)), kp,
                    grad_inputs=(0,), gradcheck=True)
    boxes = boxes_from_keypoints(_prior_kp(), None)
    j = jitter_boxes(boxes, 0.05, 0.1, generator=torch.Generator().manual_seed(0))
    c, cj = boxes_to_cxcywh(boxes), boxes_to_cxcywh(j)
    assert not torch.allclose(c, cj)
    assert ((cj[..., :2] - c[..., :2]).abs() <= 0.05 * c[..., 2:] + 1e-4).all()
    assert ((cj[..., 2:] / c[..., 2:] - 1).abs() <= 0.1 + 1e-5).all()
    assert np.allclose((cj[..., 2] / cj[..., 3]).numpy(), (c[..., 2] / c[..., 3]).numpy())


def test_per_patch_margin_extends_only_its_side():
    """A patch's own bottom margin moves the box's bottom edge, not its top (square patch,
    tall keypoint extent, so the aspect growth widens x only)."""
    from bonepatch.anatomy import RegionPatch
    kp = torch.zeros(1, NUM_KEYPOINTS, 2)
    kp[0, :, 0] = 50.
    kp[0, 2], kp[0, 3] = torch.tensor([50., 100.]), torch.tensor([50., 200.])  # c7, t12: 100 px apart
    plain = RegionPatch("p", ("c7", "t12"), ("rib",))
    low = RegionPatch("p", ("c7", "t12"), ("rib",), (("bottom", 0.5),))
    vis = torch.zeros(1, NUM_KEYPOINTS); vis[0, 2:4] = 1
    a, b = (boxes_from_keypoints(kp, vis, [p], (64, 64), margin=0.1, tau=1e-3)[0, 0] for p in (plain, low))
    assert float(a[0, 1]) == pytest.approx(90., abs=0.1) and float(a[2, 1]) == pytest.approx(210., abs=0.1)
    assert float(b[0, 1]) == pytest.approx(90., abs=0.1) and float(b[2, 1]) == pytest.approx(250., abs=0.1)
    assert (b[2, 0] - b[0, 0]).item() == pytest.approx(160., abs=0.1)  # grown to the square patch
