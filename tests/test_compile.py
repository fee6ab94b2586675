"""torch.compile(fullgraph=True): every model traces as ONE graph (no host-device sync, no
data-dependent Python), and the compiled forward and backward match eager (tiny sizes).

Fast tests: ``torch._dynamo.explain`` (no graph break) and the ``aot_eager`` backend (dynamo +
AOT autograd, no code generation). The inductor build is marked slow (~5 min on 2 busy cores).
"""
import pytest
import torch

from bonepatch.geometry.boxes import DEFAULT_KEYPOINT_PRIOR
from bonepatch.models import (FixedGridPatchSegmenter, KeypointNet, KeypointPatchSegmenter, PatchSegmenter,
                              SingleStageSegmenter)

H, W = 128, 32
TINY_SEG = dict(arch="Unet", encoder="tu-test_resnet", decoder_channels=(16, 16, 16, 16, 16))


def _image(b=2):
    return torch.rand(b, 1, H, W, generator=torch.Generator().manual_seed(0)) * 300


def _kp(b=2):
    xy = DEFAULT_KEYPOINT_PRIOR[None] * torch.tensor([W, H])
    return torch.cat([xy, torch.ones(1, 16, 1)], -1).expand(b, -1, -1).clone()


def _models():
    torch.manual_seed(0)
    return {
        "pipeline": KeypointPatchSegmenter(KeypointNet("test_resnet", input_size=(64, 16)),
                                           PatchSegmenter(num_regions=7, **TINY_SEG), patch_size=(32, 32),
                                           min_size=8, min_confidence=0.0, box_grad_scale=0.5),
        "single_stage": SingleStageSegmenter(TINY_SEG),
        "fixed_patch": FixedGridPatchSegmenter(TINY_SEG, patch_size=(64, 32)),
    }


def _loss(out):
    loss = out.logits.logsumexp(1).mean() + (out.logits[:, 3] * 0.1).mean()
    if out.keypoints is not None:
        loss = loss + 1e-3 * out.keypoints.sum() + out.patch_logits.float().square().mean()
    return loss


def _run(fn, model, x, kp):
    """Forward + backward of ``fn`` (the model or its compiled form) -> output, ``model``'s grads."""
    model.zero_grad(set_to_none=True)
    out = fn(x, kp)
    _loss(out).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out, grads


@pytest.mark.parametrize("name", ["pipeline", "single_stage", "fixed_patch"])
@pytest.mark.parametrize("train", [True, False])
def test_no_graph_breaks(name, train):
    model = _models()[name].train(train)
    for kp in (None, _kp()) if name == "pipeline" else (None,):
        torch._dynamo.reset()
        with torch.set_grad_enabled(train):
            explanation = torch._dynamo.explain(model)(_image(), kp)
        reasons = [r.reason for r in explanation.break_reasons]
        assert explanation.graph_break_count == 0 and explanation.graph_count == 1, reasons


def _grads_close(g, ref, atol):
    """Elementwise close, or (the keypoint net's gradients) the same direction and size.

    The keypoints come from a soft-argmax at temperature 0.05: it multiplies rounding
    differences of the heatmaps by 20 (inductor's fused kernels sum in another order), and the
    boxes reach the loss through bilinear sampling, piecewise linear in the coordinates.
    Measured on this tiny untrained model: keypoints 0.002 px apart, keypoint-net gradients
    cosine >= 0.9996 and norms 1-2.5 % apart; so those are compared as vectors."""
    scale = ref.abs().max().clamp_min(1e-6)
    if (g - ref).abs().max() <= atol + 1e-3 * scale:
        return True
    cos = torch.nn.functional.cosine_similarity(g.flatten().double(), ref.flatten().double(), 0)
    return bool(cos >= 0.999) and abs(float(g.norm() / ref.norm()) - 1) <= 0.05


def _compare(name, backend, atol):
    model = _models()[name].train()
    if name == "pipeline":
        model.jitter_position = model.jitter_scale = 0.0
    x = _image()
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    for kp in (None, _kp()) if name == "pipeline" else (None,):
        torch._dynamo.reset()
        eager_out, eager_grads = _run(model, model, x, kp)
        out, grads = _run(compiled, model, x, kp)
        assert torch.allclose(out.logits, eager_out.logits, atol=atol, rtol=1e-3)
        if out.keypoints is not None:
            assert torch.allclose(out.keypoints, eager_out.keypoints, atol=atol, rtol=1e-3)
            assert torch.allclose(out.boxes, eager_out.boxes, atol=atol, rtol=1e-3)
        assert grads.keys() == eager_grads.keys() and len(grads) > 10
        bad = [n for n, g in grads.items() if not _grads_close(g, eager_grads[n], atol)]
        assert not bad, bad
    model.eval()  # the eval decode takes an argmax, unstable on an untrained net's flat heatmaps:
    kp = _kp() if name == "pipeline" else None  # boxes from given keypoints
    with torch.inference_mode():
        torch._dynamo.reset()
        assert torch.allclose(compiled(x, kp).logits, model(x, kp).logits, atol=atol, rtol=1e-3)


def test_pipeline_compiles_fullgraph_aot_eager():
    """Forward and backward through dynamo + AOT autograd (no codegen) match eager."""
    _compare("pipeline", "aot_eager", 1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["pipeline", "single_stage", "fixed_patch"])
def test_models_compile_fullgraph_inductor(name):
    """The real compiler (C++ codegen on CPU): outputs and gradients match eager."""
    _compare(name, "inductor", 2e-3)
