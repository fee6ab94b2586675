"""Training-time domain randomisation (bonepatch.data.domain)."""
import pytest
import torch

from bonepatch.data.domain import DomainRandomization, domain_randomize

ALL = {k: 1.0 for k in ("thin", "resample", "blur", "gamma", "saturate", "quantize", "jpeg")}


def _batch(b=3, h=128, w=32):
    torch.manual_seed(0)
    lam = torch.zeros(b, 1, h, w)
    lam[:, :, 20:100, 10:22] = 40.0
    lam[:, :, 50:54, 14:18] = 400.0  # a hot spot
    return {"image": torch.poisson(lam + 1.0), "mask": torch.ones(b, h, w, dtype=torch.long),
            "keypoints": torch.rand(b, 16, 3)}


def test_off_is_identity_and_keys_pass_through():
    b = _batch()
    out = DomainRandomization(enabled=False)(b)
    assert out["image"] is b["image"]
    out = DomainRandomization()(b)
    assert out["mask"] is b["mask"] and out["keypoints"] is b["keypoints"]


def test_shapes_range_and_determinism_under_seed():
    b = _batch()
    torch.manual_seed(5)
    a = domain_randomize(b["image"], ALL)
    torch.manual_seed(5)
    c = domain_randomize(b["image"], ALL)
    torch.manual_seed(6)
    d = domain_randomize(b["image"], ALL)
    assert a.shape == b["image"].shape and a.dtype == b["image"].dtype
    assert torch.equal(a, c) and not torch.equal(a, d)
    assert a.min() >= 0 and torch.isfinite(a).all()


def test_each_op_does_what_it_says():
    x = _batch()["image"]
    thin = domain_randomize(x, {"thin": 1.0}, thin=(0.25, 0.25))
    assert abs(thin.sum() / x.sum() - 0.25) < 0.02 and torch.allclose(thin, thin.round(), atol=1e-3)
    sat = domain_randomize(x, {"saturate": 1.0}, saturate=(0.5, 0.5))
    hot = x > 300
    for i in range(len(x)):  # each image's hot spot is one flat plateau
        assert torch.allclose(sat[i][hot[i]], sat[i][hot[i]].amax())
    q = domain_randomize(x, {"quantize": 1.0}, levels=(16, 16))
    assert len(torch.unique(q[0])) <= 17
    blur = domain_randomize(x, {"blur": 1.0}, blur_sigma=(1.5, 1.5))
    assert (blur[:, :, 30:90, 12:20].std() < x[:, :, 30:90, 12:20].std())
    g = domain_randomize(x, {"gamma": 1.0}, gamma=(0.5, 0.5))  # sqrt curve lifts mid grey
    mid = (x > 20) & (x < 60)
    assert (g[mid] > x[mid]).float().mean() > 0.9


def test_bad_probability_names_the_options():
    with pytest.raises(ValueError, match="thin"):
        DomainRandomization(p={"blurr": 0.5})
