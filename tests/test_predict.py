"""predict.py: inputs, outputs per view, bad inputs, privacy, overwrite, atomic writes, options."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf, open_dict
from PIL import Image
from pydicom.data import get_testdata_file

from bonepatch import predict_io as pio
from bonepatch.anatomy import CLASS_IDS, FLIP_INDEX, KEYPOINTS, PAIRED_CLASSES
from bonepatch.data.io import ScanView
from bonepatch.checkpoint import CheckpointError, load_model
from bonepatch.predict import PredictError, Predictor, keep_largest_components, predict, run
from train_helpers import ROOT

NM_FILE = get_testdata_file("JPEG2000.dcm")  # a real 1024x256 NM whole-body view
SECRETS = [b"Doe^Jane", b"SECRET123", b"CompressedSamples", b"8NM1"]  # patient name / id of the inputs


@pytest.fixture
def ckpt(tiny_ckpt) -> Path:
    return tiny_ckpt


@pytest.fixture
def scans(tmp_path, toy_scan, write_dicom) -> Path:
    """A folder: the real NM file, a two-frame anterior/posterior DICOM of 'Doe^Jane', a PNG in a sub-folder."""
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    (d / "nm.dcm").write_bytes(Path(NM_FILE).read_bytes())
    write_dicom(d / "two.dcm", np.stack([toy_scan, toy_scan[:, ::-1]]), codes=[("A", "ANTERIOR"), ("P", "POSTERIOR")],
                PatientName="Doe^Jane", PatientID="SECRET123")
    Image.fromarray(toy_scan).save(d / "sub" / "case1.png")
    return d


def _summary(out: Path) -> list[dict]:
    with open(out / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def _opts(**kw):
    """These tests check files and bad inputs with an untrained model, whose maps the checks refuse."""
    return {"progress": False, "refuse_unsure": False, **kw}


def test_cli_end_to_end_without_patient_data(ckpt, scans, tmp_path):
    out, hydra_dir = tmp_path / "out", tmp_path / "hydra"
    proc = subprocess.run([sys.executable, str(ROOT / "predict.py"), f"ckpt={ckpt}", f"input={scans}",
                           f"output={out}", f"hydra.run.dir={hydra_dir}", "progress=false", "save_probs=true",
                           "refuse_unsure=false"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = _summary(out)
    assert [(Path(r["input"]).name, r["view"], r["status"]) for r in rows] == [
        ("nm.dcm", "unknown", "ok"), ("case1.png", "unknown", "ok"),
        ("two.dcm", "anterior", "ok"), ("two.dcm", "posterior", "ok")]
    for stem in ("nm_unknown", "sub/case1_unknown", "two_anterior", "two_posterior"):
        for part in ("labels.png", "overlay.png", "keypoints.json", "stats.json", "probs.npz"):
            assert (out / f"{stem}_{part}").is_file(), f"{stem}_{part}"
    labels = np.asarray(Image.open(out / "two_posterior_labels.png"))
    assert labels.shape == (128, 48) and labels.dtype == np.uint8  # back at the input's size
    assert np.asarray(Image.open(out / "nm_unknown_labels.png")).shape == (1024, 256)
    kp = json.loads((out / "two_anterior_keypoints.json").read_text())["keypoints"]
    assert [k["name"] for k in kp] == list(KEYPOINTS) and {"x", "y", "confidence"} <= set(kp[0])
    probs = np.load(out / "two_anterior_probs.npz")
    assert probs["probs"].shape == (13, 128, 48) and np.allclose(probs["probs"].astype(np.float32).sum(0), 1, atol=1e-2)
    everything = [p for d in (out, hydra_dir) for p in d.rglob("*") if p.is_file()]
    for p in everything:  # no patient name / id in any name or content
        data = p.read_bytes()
        assert not any(s.lower() in str(p).encode().lower() or s in data for s in SECRETS), p
    assert not [p for p in out.rglob(".*")], "temp files left"


def test_region_statistics_add_up(ckpt, scans, tmp_path):
    out = tmp_path / "out"
    predict(ckpt, str(scans / "nm.dcm"), out, **_opts())
    stats = json.loads((out / "nm_unknown_stats.json").read_text())
    labels = np.asarray(Image.open(out / "nm_unknown_labels.png"))
    classes = stats["classes"]
    assert sum(c["pixels"] for c in classes.values()) == stats["labelled_pixels"] == int((labels > 0).sum())
    assert stats["labelled_pixels"] > 0 and stats["spacing_mm"] == pytest.approx(2.26)
    assert sum(c["count_share"] for c in classes.values()) == pytest.approx(1)
    for c in PAIRED_CLASSES:
        s = classes[[k for k, v in CLASS_IDS.items() if v == c][0]]
        assert s["left"]["pixels"] + s["right"]["pixels"] == s["pixels"]
        assert s["left"]["count_share"] + s["right"]["count_share"] == pytest.approx(s["count_share"])
    femur = classes["femur"]
    assert femur["area_cm2"] == pytest.approx(femur["pixels"] * 0.226 ** 2)


def test_corrupt_files_do_not_stop_the_batch(ckpt, tmp_path, toy_scan):
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(toy_scan).save(d / "good.png")
    (d / "truncated.png").write_bytes((d / "good.png").read_bytes()[:200])
    (d / "text.dcm").write_text("not a DICOM file")
    (d / "notes.txt").write_text("skipped: not an image suffix")
    cfg = OmegaConf.load(ROOT / "conf" / "predict.yaml")
    with open_dict(cfg):
        del cfg["defaults"]
        cfg.update(ckpt=str(ckpt), input=[str(d), str(tmp_path / "missing.png")], output=str(tmp_path / "out"),
                   progress=False, refuse_unsure=False)
    assert run(cfg) == 1  # the exit code of predict.py
    rows = {Path(r["input"]).name: r for r in _summary(tmp_path / "out")}
    assert set(rows) == {"good.png", "truncated.png", "text.dcm", "missing.png"}
    assert rows["good.png"]["status"] == "ok" and (tmp_path / "out" / "good_unknown_labels.png").is_file()
    assert rows["truncated.png"]["status"] == "error" and "truncated" in rows["truncated.png"]["reason"]
    assert rows["text.dcm"]["status"] == "error" and "not a readable DICOM" in rows["text.dcm"]["reason"]
    assert "no such file" in rows["missing.png"]["reason"]


def test_ct_refused_unless_forced(ckpt, tmp_path, toy_scan, write_dicom):
    ct = write_dicom(tmp_path / "ct.dcm", toy_scan[None], modality="CT")
    rows = predict(ckpt, str(ct), tmp_path / "a", **_opts())
    assert rows[0]["status"] == "error" and "not NM" in rows[0]["reason"] and "force" in rows[0]["reason"]
    assert predict(ckpt, str(ct), tmp_path / "b", force_dicom=True, **_opts())[0]["status"] == "ok"


def test_empty_and_noise_scans_are_flagged_not_segmented(ckpt, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    np.save(d / "empty.npy", np.zeros((128, 48), np.float32))
    np.save(d / "noise.npy", np.random.default_rng(0).poisson(5, (128, 48)).astype(np.float32))
    rows = predict(ckpt, [str(d / "*.npy")], tmp_path / "out", **_opts())  # a glob
    assert [(r["status"], r["reason"].split(":")[0]) for r in rows] == [
        ("flag", "low counts"), ("flag", "no body found")]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "empty_unknown_overlay.png", "noise_unknown_overlay.png", "predict_run.json", "summary.csv"]


def test_overwrite_refused_by_default_and_no_temp_files(ckpt, scans, tmp_path):
    out, png = tmp_path / "out", str(scans / "sub" / "case1.png")
    predict(ckpt, png, out, **_opts())
    before = (out / "case1_unknown_labels.png").stat().st_mtime_ns
    with pytest.raises(PredictError, match="overwrite=true"):
        predict(ckpt, png, out, **_opts())
    (out / "summary.csv").unlink()  # results without a summary are protected file by file
    rows = predict(ckpt, png, out, **_opts())
    assert rows[0]["status"] == "error" and "exists" in rows[0]["reason"]
    assert (out / "case1_unknown_labels.png").stat().st_mtime_ns == before
    assert predict(ckpt, png, out, overwrite=True, **_opts())[0]["status"] == "ok"
    assert not [p for p in out.rglob(".*")]


def test_atomic_write_leaves_nothing_when_interrupted(tmp_path):
    target = tmp_path / "x.json"
    with pytest.raises(KeyboardInterrupt):
        with pio.atomic_open(target) as f:
            f.write(b"half")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content", [b"not a checkpoint", None])
def test_foreign_checkpoint_fails_clearly(tmp_path, scans, content):
    bad = tmp_path / "bad.ckpt"
    if content is None:
        torch.save({"state_dict": {}, "epoch": 3}, bad)  # a Lightning checkpoint that is not ours
    else:
        bad.write_bytes(content)
    with pytest.raises(CheckpointError, match="bad.ckpt"):
        predict(bad, str(scans), tmp_path / "out", **_opts())


def test_output_names_keep_subfolders_and_separate_same_stems(tmp_path):
    files = [tmp_path / "a" / "x.png", tmp_path / "a" / "x.dcm", tmp_path / "b" / "x.png"]
    assert pio.output_stems(files) == {files[0]: Path("a/x_png"), files[1]: Path("a/x_dcm"), files[2]: Path("b/x")}
    assert pio.view_tags(["anterior", "posterior"]) == ["anterior", "posterior"]
    assert pio.view_tags(["unknown", "unknown"]) == ["frame0_unknown", "frame1_unknown"]


def test_flip_tta_is_symmetric_and_posterior_mirroring_is_undone(ckpt, toy_scan):
    model, _ = load_model(ckpt)
    image = toy_scan.astype(np.float32)
    tta = Predictor(model, (256, 64), tta_flip=True)
    a, b = tta([ScanView(image, "anterior", None, "x"), ScanView(image[:, ::-1].copy(), "anterior", None, "x")])
    assert np.allclose(a.probs, b.probs[..., ::-1], atol=1e-4)  # TTA output commutes with mirroring
    assert np.allclose(a.keypoints[:, 0], 47 - b.keypoints[list(FLIP_INDEX), 0], atol=1e-2)
    mirrored = Predictor(model, (256, 64), mirror_posterior=True)
    post = ScanView(image, "posterior", None, "x", flipped=True)
    assert mirrored.mirrored(post)
    p = mirrored([post])[0]
    q = Predictor(model, (256, 64))([ScanView(image[:, ::-1].copy(), "anterior", None, "x")])[0]
    assert np.allclose(p.probs, q.probs[..., ::-1], atol=1e-5)  # outputs in the input's orientation
    assert np.allclose(p.confidence, q.confidence[list(FLIP_INDEX)], atol=1e-5)


def test_largest_component_per_class_and_side():
    lm = np.zeros((40, 40), np.uint8)
    lm[5:35, 19:21] = CLASS_IDS["thoracic_vertebrae"]  # spine midline at x = 19.5
    lm[5:10, 2:8], lm[20:22, 2:4] = CLASS_IDS["humerus"], CLASS_IDS["humerus"]  # left: big + speck
    lm[5:7, 32:34] = CLASS_IDS["humerus"]  # right: one small piece, kept
    lm[30:32, 30:32] = CLASS_IDS["thoracic_vertebrae"]  # a stray spine piece
    out = keep_largest_components(lm)
    assert (out[20:22, 2:4] == 0).all() and (out[5:10, 2:8] > 0).all() and (out[5:7, 32:34] > 0).all()
    assert (out[30:32, 30:32] == 0).all() and (out[5:35, 19:21] > 0).all()


def test_dicom_seg_without_highdicom_fails_before_any_work(scans, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "highdicom", None)  # as if not installed
    with pytest.raises(PredictError, match="pip install"):
        predict(tmp_path / "never_read.ckpt", str(scans), tmp_path / "out", dicom_seg=True, **_opts())


def test_dicom_seg(ckpt, scans, tmp_path):
    pytest.importorskip("highdicom")
    import pydicom

    rows = predict(ckpt, str(scans), tmp_path / "out", dicom_seg=True, **_opts())
    assert [r["status"] for r in rows] == ["ok"] * 4
    assert "no DICOM SEG" in rows[-1]["reason"] and not (tmp_path / "out" / "two_seg.dcm").exists()  # no frame of ref.
    seg_file = tmp_path / "out" / "nm_seg.dcm"
    seg = pydicom.dcmread(seg_file)
    assert seg.Modality == "SEG" and len(seg.SegmentSequence) == 12 and str(seg.PatientName) == ""
    assert not any(s in seg_file.read_bytes() for s in SECRETS)
