"""Weights files: export (float16, no optimiser), loading with weights_only, ``default`` resolution."""
import pytest
import torch

from bonepatch import checkpoint as ck
from bonepatch.pretrained import load_pretrained


def test_export_weights_is_half_precision_and_predicts_like_the_checkpoint(tiny_ckpt, tmp_path):
    out = ck.export_weights(tiny_ckpt, tmp_path / "w.pt")
    raw = torch.load(out, map_location="cpu", weights_only=True)
    assert set(raw) == {"bonepatch", "state_dict"}  # no optimiser / trainer state
    floats = [v for v in raw["state_dict"].values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)
    assert out.stat().st_size < 0.7 * tiny_ckpt.stat().st_size
    a, _ = ck.load_model(tiny_ckpt)
    b, config = ck.load_model(out)
    assert next(b.parameters()).dtype == torch.float32 and "init_from" not in config["model"]
    x = torch.rand(1, 1, 256, 64) * 200
    with torch.inference_mode():
        pa, pb = a(x).logits.softmax(1), b(x).logits.softmax(1)
    assert (pa - pb).abs().max() < 0.02  # float16 rounding only
    assert (pa.argmax(1) == pb.argmax(1)).float().mean() > 0.99


def test_default_names_the_shipped_file_or_says_how_to_get_one(monkeypatch, tmp_path):
    monkeypatch.setattr(ck, "DEFAULT_WEIGHTS", tmp_path / "weights" / "default.pt")
    with pytest.raises(ck.CheckpointError, match="no default weights.*ckpt=PATH"):
        ck.resolve_checkpoint("default")
    assert ck.resolve_checkpoint("some/run.ckpt") == ck.Path("some/run.ckpt")


def test_init_from_default_loads_the_shipped_weights(tiny_ckpt, tmp_path, monkeypatch):
    shipped = ck.export_weights(tiny_ckpt, tmp_path / "weights" / "default.pt")
    monkeypatch.setattr(ck, "DEFAULT_WEIGHTS", shipped)
    reference, _ = ck.load_model(shipped)
    fresh, _ = ck.load_model(tiny_ckpt)
    for p in fresh.parameters():  # scramble, so only loading can bring the weights back
        torch.nn.init.normal_(p)
    loaded = load_pretrained(fresh, "default")
    assert loaded and len(loaded) == len([n for n, p in fresh.named_parameters()])
    for (n, p), q in zip(fresh.named_parameters(), reference.parameters()):
        assert torch.equal(p, q), n


def test_export_cli(tiny_ckpt, tmp_path, capsys):
    assert ck.main(["export", str(tiny_ckpt), str(tmp_path / "x.pt")]) == 0
    assert "MiB" in capsys.readouterr().out and (tmp_path / "x.pt").is_file()


def test_the_shipped_default_weights_load_safely_and_fit_the_size_budget():
    path = ck.DEFAULT_WEIGHTS
    assert path.is_file(), "bonepatch/weights/default.pt ships with the package (docs/model_card.md)"
    assert path.stat().st_size <= 40 * 2**20
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert raw["bonepatch"]["dtype"] == "float16"
    model, config = ck.load_model("default")
    assert config["data"]["train_dataset"]["config"]["height"] == 512  # the model card's training size
    with torch.inference_mode():
        out = model(torch.rand(1, 1, 512, 128) * 50)
    assert out.logits.shape == (1, 13, 512, 128) and torch.isfinite(out.logits).all()
