"""Models: preprocess, keypoint net, segmenter, the pipeline and the baselines (tiny sizes)."""
import pytest
import torch

from bonepatch.anatomy import CLASS_IDS, DEFAULT_PATCHES, NUM_CLASSES
from bonepatch.geometry import heatmaps as hm
from bonepatch.geometry.boxes import DEFAULT_KEYPOINT_PRIOR, boxes_from_keypoints
from bonepatch.models import (FixedGridPatchSegmenter, KeypointNet, KeypointPatchSegmenter, PatchSegmenter,
                              SingleStageSegmenter)
from bonepatch.preprocess import Preprocess, clahe, normalize_counts
from component_tester import check_component

H, W = 256, 64  # tiny scans (a quarter of 1024 x 256)
SEG = dict(arch="Unet", encoder="resnet18")


def _image(b=2, seed=0):
    return torch.rand(b, 1, H, W, generator=torch.Generator().manual_seed(seed)) * 300


def _kp(b=2):
    xy = DEFAULT_KEYPOINT_PRIOR[None] * torch.tensor([W, H])
    return torch.cat([xy, torch.ones(1, 16, 1)], -1).expand(b, -1, -1).clone()  # (B, K, 3)


def _pipeline(**kw):
    torch.manual_seed(0)
    kw = {"min_confidence": 0.0, "patch_size": (64, 64), "min_size": 16, **kw}  # untrained net: not confident
    return KeypointPatchSegmenter(KeypointNet("test_resnet", input_size=(128, 32)),
                                  PatchSegmenter(num_regions=7, **SEG), **kw)


def test_preprocess():
    x = _image()
    y = check_component(Preprocess(), x)
    assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1
    assert torch.equal(Preprocess(normalize=False, clahe=False)(x), x)
    assert normalize_counts(torch.zeros(1, 1, 8, 8)).abs().sum() == 0  # blank stays finite
    assert clahe(torch.rand(1, 1, 32, 32), 2, [4, 4]).shape == (1, 1, 32, 32)  # Hydra list grid


@pytest.mark.parametrize("bad, match", [
    (torch.rand(1, 64, 32), r"\(B, 1, H, W\)"), (torch.rand(1, 3, 64, 32), r"\(B, 1, H, W\)"),
    (torch.full((1, 1, 64, 32), float("nan")), "NaN"), (-torch.rand(1, 1, 64, 32), "negative"),
    (torch.ones(1, 1, 64, 32, dtype=torch.long), "floating")])
def test_bad_input_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        _pipeline()(bad)
    assert (Preprocess(clahe=False, negative="clamp")(-torch.rand(1, 1, 8, 8)) == 0).all()  # documented fix-up


@pytest.mark.parametrize("head", ["heatmap", "simcc"])
def test_keypoint_net(head):
    net = KeypointNet("test_resnet", head=head, input_size=(128, 32))
    out = check_component(net, _image(), params=net.parameters(), select=lambda o: (o.keypoints, o.raw))
    assert out.keypoints.shape == (2, 16, 2) and out.confidence.shape == (2, 16)
    loss = net.loss(net(_image()), _kp(), (H, W))
    loss.backward()
    assert torch.isfinite(loss) and net.head.weight.grad.abs().sum() > 0
    # decoding the head's own targets recovers the keypoints (in input-image pixels)
    net = KeypointNet("test_resnet", head=head, input_size=(256, 128))  # heatmap 64 x 32
    kp = _kp()[..., :2] + torch.tensor([3.3, -4.6])
    hs, ws = net.heat_size
    g = torch.stack([hm.to_grid(kp[..., 0], W, ws), hm.to_grid(kp[..., 1], H, hs)], -1)
    inside = ((g > 3 * net.sigma) & (g < torch.tensor([ws, hs]) - 1 - 3 * net.sigma)).all(-1)  # not truncated
    if head == "heatmap":
        raw = hm.render_heatmaps(g, (hs, ws), net.sigma)
    else:
        g = torch.stack([hm.to_grid(kp[..., 0], W, net.bins[1]), hm.to_grid(kp[..., 1], H, net.bins[0])], -1)
        raw = tuple(t.log() for t in hm.render_simcc(g, net.bins, net.sigma * net.split))
    assert inside.sum() >= 8
    for train in (True, False):  # soft decode while training, local decode in eval
        net.train(train)
        assert (net.decode_raw(raw, (H, W))[0] - kp)[inside].abs().max() < 0.5


def test_keypoint_net_hrnet_uses_high_resolution_branches():
    net = KeypointNet("hrnet_w18_small", input_size=(128, 32))
    assert net.stride == 4 and len(net.levels) == 4  # stride 4, 8, 16, 32 fused (HRNetV2 style)
    assert net(_image(1)).raw.shape == (1, 16, 32, 8)


@pytest.mark.parametrize("conditioning", ["channels", "film", "none"])
def test_segmenter(conditioning):
    seg = PatchSegmenter(num_regions=3, conditioning=conditioning, allowed_classes=[[1], [2, 3], [4]], **SEG)
    region = torch.tensor([0, 1, 2])
    out = check_component(seg, torch.rand(3, 1, 64, 64), region, grad_inputs=(0,), params=seg.parameters())
    assert out.shape == (3, NUM_CLASSES, 64, 64)
    assert (out[0, 2:] <= -1e3).all() and (out[1, [2, 3]] > -1e3).all()  # restricted to allowed + bg
    assert seg(torch.rand(1, 1, 50, 70), None).shape == (1, NUM_CLASSES, 50, 70)  # padded, cropped back
    seg.pad_to_stride = False
    with pytest.raises(ValueError, match="multiple"):
        seg(torch.rand(1, 1, 50, 70), None)


@pytest.mark.parametrize("b", [1, 3])
def test_pipeline_forward_backward(b):
    model = _pipeline()
    out = check_component(model, _image(b), params=model.parameters(), select=lambda o: o.logits)
    assert out.logits.shape == (b, NUM_CLASSES, H, W) and out.boxes.shape == (b, 7, 4, 2)
    assert out.patch_logits.shape == (b * 7, NUM_CLASSES, 64, 64) and out.patch_region.tolist() == list(range(7)) * b
    assert torch.allclose(out.logits.exp().sum(1), torch.ones(b, H, W), atol=1e-4)  # log-probabilities
    assert torch.isfinite(model.keypoint_loss(out, _kp(b)))


@pytest.mark.parametrize("detach", [False, True])
def test_segmentation_gradient_reaches_keypoint_net(detach):
    model = _pipeline(detach_boxes=detach)
    out = model(_image())
    loss = torch.nn.functional.cross_entropy(out.logits, torch.randint(0, NUM_CLASSES, (2, H, W)))
    loss.backward()
    g = sum(p.grad.abs().sum() for p in model.keypoint_net.parameters() if p.grad is not None)
    assert (g == 0) if detach else (g > 0)
    assert all(p.grad is not None for p in model.segmenter.parameters() if p.requires_grad)


def test_teacher_forcing_and_patch_targets():
    model = _pipeline()
    kp = _kp()
    out = model(_image(), kp)
    assert torch.allclose(out.boxes, boxes_from_keypoints(kp[..., :2], kp[..., 2], DEFAULT_PATCHES, (64, 64),
                                                          min_size=16, image_size=(H, W), min_confidence=0.0))
    mask = torch.full((2, H, W), CLASS_IDS["rib"])
    t = model.patch_targets(mask, out.boxes)
    assert t.shape == (14, 64, 64) and t.dtype == torch.long
    rib_ok = [("rib" in p.classes) for p in DEFAULT_PATCHES] * 2
    for i, ok in enumerate(rib_ok):  # thorax keeps rib, every other region maps it to background
        assert set(t[i].unique().tolist()) <= ({0, CLASS_IDS["rib"]} if ok else {0})


def test_oracle_paste_reassembles_label_map():
    """Patches = one-hot ground-truth crops: the pasted map equals the mask where a box allows the class."""
    model = _pipeline(patch_size=(256, 256))  # >= 2x every box: nearest crops are exact
    mask = torch.zeros(1, H, W, dtype=torch.long)
    y = DEFAULT_KEYPOINT_PRIOR[:, 1] * H
    mask[0, int(y[0]) + 2:int(y[1]), 24:40] = CLASS_IDS["skull"]
    mask[0, int(y[2]) + 3:int(y[3]), 30:34] = CLASS_IDS["thoracic_vertebrae"]
    mask[0, int(y[2]) + 6:int(y[3]) - 3, 18:46] = CLASS_IDS["rib"]
    mask[0, int(y[10]) + 2:int(y[12]) - 2, 18:21] = CLASS_IDS["femur"]
    boxes = boxes_from_keypoints(_kp(1)[..., :2], None, DEFAULT_PATCHES, (256, 256), image_size=(H, W))
    onehot = torch.nn.functional.one_hot(model.patch_targets(mask, boxes), NUM_CLASSES).permute(0, 3, 1, 2)
    logits = model.paste((onehot.float() * 50), boxes, model.regions(1, "cpu"), (H, W))
    label = logits.argmax(1)
    covered = torch.zeros(H, W, dtype=torch.bool)
    x1, y1, x2, y2 = boxes[0, :, 0, 0], boxes[0, :, 0, 1], boxes[0, :, 2, 0], boxes[0, :, 2, 1]
    for r in range(7):
        covered[int(y1[r].clamp(0).ceil()):int(y2[r].floor()) + 1, int(x1[r].clamp(0).ceil()):int(x2[r].floor()) + 1] = True
    assert (label[0][covered] == mask[0][covered]).float().mean() > 0.999
    assert (label[0][~covered] == 0).all()


@pytest.mark.parametrize("case", ["one_point", "outside", "invisible"])
def test_degenerate_keypoints_finite(case):
    model = _pipeline()
    kp = _kp()
    if case == "one_point":
        kp[..., :2] = 30.0
    elif case == "outside":
        kp[..., :2] = -1e4
    else:
        kp[..., 2] = 0
    out = check_component(model, _image(), kp, grad_inputs=(1,), params=model.segmenter.parameters(),
                          select=lambda o: o.logits, nonzero=case != "outside")  # no box on the image
    assert torch.isfinite(out.boxes).all()


def test_baselines():
    single = SingleStageSegmenter(SEG)
    out = check_component(single, _image(), params=single.parameters(), select=lambda o: o.logits)
    assert out.logits.shape == (2, NUM_CLASSES, H, W) and out.keypoints is None and out.boxes is None
    grid = FixedGridPatchSegmenter(SEG, patch_size=(64, 64))
    out = check_component(grid, _image(1), params=grid.parameters(), select=lambda o: o.logits)
    assert out.logits.shape == (1, NUM_CLASSES, H, W) and out.keypoints is None
    assert torch.allclose(out.logits.exp().sum(1), torch.ones(1, H, W), atol=1e-4)
    assert out.boxes.shape[1] == out.patch_logits.shape[0] == 5  # 5 rows x 1 column of 64 px


def test_call_decoder_supports_both_smp_decoder_signatures():
    """smp >= 0.5 decoders take the feature list, 0.3-0.4 take the features as arguments."""
    from torch import nn

    from bonepatch.models.segmenter import call_decoder

    class ListDecoder(nn.Module):  # smp >= 0.5
        def forward(self, features):
            return features[-1] * 2

    class StarDecoder(nn.Module):  # smp 0.3 / 0.4
        def forward(self, *features):
            return features[-1] * 3

    feats = [torch.ones(1, 2, 4, 4), torch.ones(1, 2, 2, 2)]
    assert float(call_decoder(ListDecoder(), feats).sum()) == 16
    assert float(call_decoder(StarDecoder(), feats).sum()) == 24
