"""LightningModule units: teacher-forcing schedule, per-part learning rates, segment-stage freeze."""
import pytest
import torch

from bonepatch.lit_module import BonePatchModule, teacher_forcing_prob
from bonepatch.models import KeypointNet, KeypointPatchSegmenter, PatchSegmenter, SingleStageSegmenter


def _pipeline():
    torch.manual_seed(0)
    return KeypointPatchSegmenter(KeypointNet("test_resnet", input_size=(128, 32)),
                                  PatchSegmenter(encoder="resnet18", num_regions=7), patch_size=(64, 64),
                                  min_size=16, min_confidence=0.0)


def _module(model=None, **kw):
    opt = lambda params: torch.optim.AdamW(params, lr=1e-3)  # noqa: E731 - a partial optimiser
    return BonePatchModule(model or _pipeline(), opt, None, **kw)


def _batch(b=2):
    kp = torch.zeros(b, 16, 3)
    kp[..., 0], kp[..., 1], kp[..., 2] = 32.0, torch.linspace(10, 240, 16), 1.0
    return {"image": torch.rand(b, 1, 256, 64) * 100, "keypoints": kp,
            "mask": torch.zeros(b, 256, 64, dtype=torch.long)}


def test_teacher_forcing_probability_decays_linearly_then_holds():
    assert [teacher_forcing_prob(s, 1.0, 0.2, 100) for s in (0, 50, 100, 500)] == pytest.approx([1.0, 0.6, 0.2, 0.2])
    assert teacher_forcing_prob(7, 1.0, 0.3, 0) == pytest.approx(0.3)  # no schedule: the end value


@pytest.mark.parametrize("start,expect_true", [(1.0, True), (0.0, False)])
def test_training_boxes_follow_the_schedule(start, expect_true):
    module = _module(teacher_forcing={"start": start, "end": start, "steps": 10}, keypoint_jitter=0.01)
    batch = _batch()
    for _ in range(5):
        kp = module._box_keypoints(batch, train=True)
        if not expect_true:
            assert kp is None  # predicted keypoints drive the boxes
            continue
        assert kp is not None and kp.shape == batch["keypoints"].shape
        shift = (kp[..., :2] - batch["keypoints"][..., :2]).abs()
        assert 0 < shift.max() < 0.01 * 230 * 6  # jittered by ~1% of the body height, not replaced
        assert torch.equal(kp[..., 2], batch["keypoints"][..., 2])


def test_validation_boxes_are_predicted_unless_oracle_requested():
    batch = _batch()
    assert _module()._box_keypoints(batch, train=False) is None
    assert _module(val_boxes="gt")._box_keypoints(batch, train=False) is batch["keypoints"]


def test_keypoint_net_gets_its_own_learning_rate():
    module = _module(keypoint_lr_scale=0.1)
    opt = module.configure_optimizers()
    groups = {g["name"]: g for g in opt.param_groups}
    assert groups["keypoint_net"]["lr"] == pytest.approx(1e-4) and groups["segmenter"]["lr"] == pytest.approx(1e-3)
    kp_ids = {id(p) for p in module.model.keypoint_net.parameters()}
    assert all(id(p) in kp_ids for p in groups["keypoint_net"]["params"])
    assert not any(id(p) in kp_ids for p in groups["segmenter"]["params"])
    n = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n == sum(p.numel() for p in module.model.parameters())  # nothing left out


def test_baseline_has_one_parameter_group():
    module = _module(SingleStageSegmenter({"encoder": "resnet18"}))
    assert [g["name"] for g in module.configure_optimizers().param_groups] == ["segmenter"]


def test_segment_stage_freezes_the_keypoint_net_and_keeps_it_in_eval():
    module = _module(stage="segment")
    assert not any(p.requires_grad for p in module.model.keypoint_net.parameters())
    assert all(p.requires_grad for p in module.model.segmenter.parameters())
    module.train()
    assert not module.model.keypoint_net.training and module.model.segmenter.training
    names = [g["name"] for g in module.configure_optimizers().param_groups]
    assert names == ["segmenter"]  # frozen parameters are not optimised
    before = [p.detach().clone() for p in module.model.keypoint_net.parameters()]
    out = module.model(_batch()["image"])  # predicted boxes: unfrozen, the gradient would reach the net
    torch.nn.functional.cross_entropy(out.logits, _batch()["mask"]).backward()
    assert all(p.grad is None for p in module.model.keypoint_net.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, module.model.keypoint_net.parameters()))
