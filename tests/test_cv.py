"""Cross-validation on a BS-80K-layout set: 2-fold smoke CV (train.py -m), bonepatch.cv, the fold
ensemble in predict.py, and post-processing chosen on validation and stored in the checkpoint."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from bonepatch import cv
from bonepatch.anatomy import CLASS_IDS
from bonepatch.checkpoint import postprocess_of, read_checkpoint, set_postprocess
from bonepatch.data.phantom import PhantomConfig
from bonepatch.data.phantom.bs80k_writer import write_bs80k
from bonepatch.ensemble import EnsembleModel, checkpoint_files, load_models
from bonepatch.postprocess import PostprocessSelector, combine, keep_largest_components
from bonepatch.predict import predict
from train_helpers import ROOT

#: Tiny model and budget for a bs80k run (the data are 256 x 64).
TINY_BS80K = ["data.size=[256,64]", "data.batch_size=2", "~logger", "callbacks.progress_bar=null",
              "trainer.enable_model_summary=false", "model.keypoint_net.input_size=[128,32]",
              "model.patch_size=[64,64]", "model.min_size=8.0", "trainer.max_steps=2", "trainer.limit_val_batches=1",
              "trainer.limit_test_batches=1", "callbacks.overlays=null"]


def test_two_fold_cross_validation_summary_and_fold_ensemble(tmp_path):
    write_bs80k(tmp_path / "set", 8, seed=0, config=PhantomConfig(height=256, width=64, mm_per_px=9.6))
    env = {**os.environ, "BONEPATCH_LOG_DIR": str(tmp_path / "logs"), "PYTHONUNBUFFERED": "1"}
    res = subprocess.run([sys.executable, str(ROOT / "train.py"), "-m", "experiment=joint", "data=bs80k",
                          f"data.root={tmp_path / 'set' / 'dataset'}", f"data.images={tmp_path / 'set' / 'images'}",
                          "data.fold=0,1", *TINY_BS80K], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    sweep = next((tmp_path / "logs" / "joint" / "multiruns").iterdir())
    vals = [json.loads((sweep / str(k) / "metrics_val.json").read_text()) for k in (0, 1)]
    assert [v["fold"] for v in vals] == [0, 1] and all("dice_skull" in v for v in vals)
    for k in (0, 1):  # the choice made on validation is in the checkpoint
        stored = postprocess_of(read_checkpoint(sweep / str(k) / "checkpoints" / "last.ckpt"))
        assert stored == vals[k]["postprocess"] and set(stored["dice_raw"]) == set(stored["dice_largest"])

    assert cv.main([str(sweep)]) == 0
    summary = json.loads((sweep / "cv_summary.json").read_text())
    skull = summary["tables"]["val"]["skull"]
    assert skull["n"] == 2 and skull["per_fold"] == [v["dice_skull"] for v in vals]
    assert abs(skull["mean"] - np.mean(skull["per_fold"])) < 1e-9
    assert abs(skull["sd"] - np.std(skull["per_fold"], ddof=1)) < 1e-9
    assert "test" in summary["tables"] and "| **mean** |" in (sweep / "cv_summary.md").read_text()

    files = checkpoint_files(sweep)
    assert [f.parent.parent.name for f in files] == ["0", "1"]
    out = tmp_path / "pred"
    rows = predict(sweep, tmp_path / "set" / "images" / "0001_ant.jpg", out, progress=False,
                   refuse_unsure=False)  # a tiny model is unsure
    assert [r["status"] for r in rows] == ["ok"]
    labels = np.asarray(Image.open(out / "0001_ant_anterior_labels.png"))
    assert labels.shape == (256, 64) and labels.max() <= 12
    model, _, chosen = load_models([str(f) for f in files])
    assert isinstance(model, EnsembleModel) and len(model.members) == 2
    assert chosen == tuple(CLASS_IDS[n] for n in combine([v["postprocess"] for v in vals]))


def test_ensemble_averages_probabilities_and_keypoints(tiny_ckpt):
    single, _, _ = load_models(tiny_ckpt)
    pair, _, _ = load_models([str(tiny_ckpt), str(tiny_ckpt)])
    x = torch.rand(1, 1, 256, 64) * 50
    with torch.no_grad():
        a, b = single(x), pair(x)
    assert torch.allclose(a.logits.softmax(1), b.logits.softmax(1), atol=1e-5)
    assert torch.allclose(a.keypoints, b.keypoints, atol=1e-4) and b.boxes.shape == a.boxes.shape


def test_selector_keeps_largest_only_where_it_raises_dice():
    truth = np.zeros((1, 128, 48), np.int64)
    truth[0, 10:30, 16:32] = CLASS_IDS["skull"]
    truth[0, 60:66, 22:26] = truth[0, 72:78, 22:26] = CLASS_IDS["sacrum"]  # truly two pieces
    pred = truth.copy()
    pred[0, 100:104, 2:6] = CLASS_IDS["skull"]  # a stray skull blob far from the head
    sel = PostprocessSelector()
    sel.update(torch.from_numpy(pred), torch.from_numpy(truth))
    choice = sel.compute()
    assert choice["largest_component"] == ["skull"]
    assert choice["dice_largest"]["skull"] == 1.0 > choice["dice_raw"]["skull"]
    assert choice["dice_largest"]["sacrum"] < choice["dice_raw"]["sacrum"] == 1.0
    assert combine([choice, None]) == ["skull"] and combine([None]) == []


def test_stored_choice_is_applied_by_predict_and_old_checkpoints_mean_none(tiny_ckpt, tmp_path):
    ckpt = tmp_path / "m.ckpt"
    data = torch.load(tiny_ckpt, map_location="cpu", weights_only=True)
    data["bonepatch"].pop("postprocess", None)  # as written before post-processing existed
    torch.save(data, ckpt)
    assert load_models(ckpt)[2] == ()
    scan = tmp_path / "scan.png"
    from bonepatch.data.phantom import render
    s = render(0, 0, PhantomConfig(height=256, width=64, mm_per_px=9.6))
    Image.fromarray(np.clip(s["image"], 0, 65535).astype(np.uint16)).save(scan)
    predict(ckpt, scan, tmp_path / "raw", progress=False,
                   refuse_unsure=False)  # a tiny model is unsure
    set_postprocess(ckpt, {"largest_component": list(map(str, ("skull", "rib", "femur", "pelvis", "humerus")))})
    assert load_models(ckpt)[2] == tuple(CLASS_IDS[n] for n in ("skull", "rib", "femur", "pelvis", "humerus"))
    predict(ckpt, scan, tmp_path / "pp", progress=False,
                   refuse_unsure=False)  # a tiny model is unsure
    raw = np.asarray(Image.open(tmp_path / "raw" / "scan_unknown_labels.png"))
    pp = np.asarray(Image.open(tmp_path / "pp" / "scan_unknown_labels.png"))
    wanted = [CLASS_IDS[n] for n in ("skull", "rib", "femur", "pelvis", "humerus")]
    assert np.array_equal(pp, keep_largest_components(raw, wanted))


def test_cv_refuses_folders_without_metrics(tmp_path):
    with pytest.raises(SystemExit, match="metrics_val.json"):
        cv.main([str(tmp_path)])


def test_checkpoint_folders_give_one_checkpoint_per_run(tmp_path):
    names = ["m/0/checkpoints/best-epoch001.ckpt", "m/0/checkpoints/last.ckpt", "m/1/checkpoints/last.ckpt",
             "s/checkpoints/0_keypoint/last.ckpt", "s/checkpoints/2_joint/best-epoch003.ckpt",
             "s/checkpoints/2_joint/last.ckpt", "plain/a.ckpt", "plain/b.ckpt"]
    for n in names:
        (tmp_path / n).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / n).write_text("x")
    rel = lambda spec: [str(p.relative_to(tmp_path)) for p in checkpoint_files(spec)]  # noqa: E731
    assert rel(tmp_path / "m") == ["m/0/checkpoints/best-epoch001.ckpt", "m/1/checkpoints/last.ckpt"]
    assert rel(tmp_path / "s") == ["s/checkpoints/2_joint/best-epoch003.ckpt"]  # a staged run: its last stage
    assert rel([str(tmp_path / "plain"), str(tmp_path / "m" / "1")]) == [
        "plain/a.ckpt", "plain/b.ckpt", "m/1/checkpoints/last.ckpt"]
