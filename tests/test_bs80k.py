"""data=bs80k: the phantom writer's BS-80K layout, the reader, folds, and bonepatch.verify finding
every planted problem (with its file) before any training."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from bonepatch.anatomy import CLASS_IDS
from bonepatch.data.bs80k import BS80KDataModule
from bonepatch.data.bs80k_layout import Layout, canonical_class, numeric_id, view_of
from bonepatch.data.phantom import PhantomConfig
from bonepatch.data.phantom.bs80k_writer import write_bs80k
from bonepatch.data.problems import DatasetProblems
from bonepatch.verify import verify_data
from train_helpers import ROOT

TINY = PhantomConfig(height=256, width=64, mm_per_px=9.6)


@pytest.fixture(scope="module")
def clean_set(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bs80k")
    write_bs80k(out, 8, seed=0, config=TINY)
    return out


@pytest.fixture
def bs80k(clean_set, tmp_path) -> Path:
    """A private copy of the 8-acquisition set: OUT/dataset (masks, splits, labels) + OUT/images."""
    shutil.copytree(clean_set, tmp_path / "set")
    return tmp_path / "set"


def _data_cfg(out: Path, **kw):
    cfg = OmegaConf.load(ROOT / "conf" / "data" / "bs80k.yaml")
    cfg.root, cfg.images, cfg.folds_out = str(out / "dataset"), str(out / "images"), str(out / "run" / "folds.json")
    for k, v in kw.items():
        cfg[k] = v
    return cfg


def test_writer_writes_the_public_layout(bs80k):
    root = bs80k / "dataset"
    assert sorted(p.name for p in (root / "masks").iterdir()) == [
        "anterior", "anterior_colored", "posterior", "posterior_colored"]
    ant = np.asarray(Image.open(bs80k / "images" / "0003_ant.jpg"))
    post = np.asarray(Image.open(root / "masks" / "posterior" / "Posterior_0003.png"))
    assert ant.dtype == np.uint8 and ant.shape == (256, 64) and ant.max() > 200  # 8-bit, bright bone
    assert post.shape == (256, 64) and CLASS_IDS["sternum"] not in post and CLASS_IDS["rib"] in post
    lists = {s: (root / "splits" / "anterior" / f"{s}.txt").read_text().split() for s in ("train", "val", "test")}
    assert sorted(int(i) for ids in lists.values() for i in ids) == list(range(1, 9))
    assert lists == {s: (root / "splits" / "posterior" / f"{s}.txt").read_text().split() for s in lists}
    folds = json.loads((root / "splits" / "splits_5fold.json").read_text())
    vals = sorted(name for f in folds for name in f["val"])
    pool = sorted(int(i) for s in ("train", "val") for i in lists[s])
    assert len(folds) == 5 and vals == sorted(f"{v}_{i:04d}" for v in ("Anterior", "Posterior") for i in pool)
    assert json.loads((root / "class_labels.json").read_text())["6"] == "collarbone"


def test_cli_writes_bs80k(tmp_path):
    res = subprocess.run([sys.executable, "-m", "bonepatch.data.phantom", "--out", str(tmp_path / "o"), "--n", "2",
                          "--layout", "bs80k", "--height", "128", "--width", "32", "--image-format", "png"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert np.asarray(Image.open(tmp_path / "o" / "images" / "0002_post.png")).shape == (128, 32)


def test_names_ids_views_and_class_aliases():
    assert numeric_id(Path("Anterior_0945.png")) == numeric_id(Path("scan-945_post.jpg")) == 945
    assert numeric_id(Path("mask.png")) is None
    assert view_of(Path("posterior/0945.jpg")) == "posterior" and view_of(Path("0945_ANT.jpg")) == "anterior"
    assert view_of(Path("0945.jpg")) == "unknown"
    assert [canonical_class(n) for n in ("collarbone", "Cervical spine", "Ribs", "femurs", "lumbar vertebra")] == [
        "clavicle", "cervical_vertebrae", "rib", "femur", "lumbar_vertebrae"]


def test_datamodule_folds_views_and_mirroring(bs80k):
    dm = BS80KDataModule(**{k: v for k, v in OmegaConf.to_container(_data_cfg(bs80k, fold=2), resolve=True).items()
                            if not k.endswith("_dataset") and k != "_target_" and k != "_convert_"})
    train, val, test = (dm.datasets[s] for s in ("train", "val", "test"))
    ids = lambda ds: {c.id for c in ds.cases}  # noqa: E731
    assert not ids(train) & ids(val) and not (ids(train) | ids(val)) & ids(test)
    assert {c.view for c in val.cases} == {"anterior", "posterior"}  # both views of an id, same side
    s = train[0]
    assert s["image"].shape == (1, 256, 64) and s["mask"].dtype == torch.int64 and s["keypoints"].shape == (16, 3)
    assert s["meta"]["case_id"].startswith("Anterior_") and s["image"].max() <= 255
    post = BS80KDataModule(str(bs80k / "dataset"), str(bs80k / "images"), view="posterior", mirror_posterior=True)
    p = post.datasets["train"][0]
    raw = np.asarray(Image.open(post.datasets["train"].cases[0].mask))
    assert p["meta"]["mirrored"] and np.array_equal(p["mask"].numpy(), raw[:, ::-1])


def test_seeded_folds_written_next_to_the_run_when_none_ship(bs80k):
    (bs80k / "dataset" / "splits" / "splits_5fold.json").unlink()
    for v in ("anterior", "posterior"):  # no val list is needed with folds
        (bs80k / "dataset" / "splits" / v / "val.txt").unlink()
    cfg = _data_cfg(bs80k, fold=1, num_folds=2)
    dm = BS80KDataModule(cfg.root, cfg.images, fold=1, num_folds=2, folds_out=cfg.folds_out)
    written = json.loads(Path(cfg.folds_out).read_text())
    assert len(written) == 2 and {c.name for c in dm.datasets["val"].cases} == set(written[1]["val"])
    again = BS80KDataModule(cfg.root, cfg.images, fold=1, num_folds=2)
    assert [c.name for c in again.datasets["val"].cases] == [c.name for c in dm.datasets["val"].cases]
    with pytest.raises(Exception, match="data.fold"):
        BS80KDataModule(cfg.root, cfg.images)  # no val.txt and no fold


def _plant_every_problem(out: Path) -> dict[str, str]:
    """Plant one problem of each kind; returns kind -> a file name the report must name."""
    root, masks = out / "dataset", out / "dataset" / "masks"
    Image.fromarray(np.zeros((128, 64), np.uint8) + 1).save(masks / "anterior" / "Anterior_0001.png")
    m = np.asarray(Image.open(masks / "anterior" / "Anterior_0002.png")).copy()
    m[0, 0] = 200
    Image.fromarray(m).save(masks / "anterior" / "Anterior_0002.png")
    m = np.asarray(Image.open(masks / "posterior" / "Posterior_0003.png")).copy()
    m[100:104, 30:34] = CLASS_IDS["sternum"]
    Image.fromarray(m).save(masks / "posterior" / "Posterior_0003.png")
    Image.fromarray(np.zeros((256, 64), np.uint8)).save(masks / "anterior" / "Anterior_0004.png")
    (masks / "posterior" / "Posterior_0005.png").unlink()  # id 5 is listed: its scan has no mask
    (out / "images" / "0006_ant.jpg").unlink()  # a mask without a scan
    shutil.copy(masks / "anterior" / "Anterior_0007.png", masks / "anterior" / "7.png")
    Image.fromarray(np.zeros((256, 64), np.uint8)).save(masks / "anterior" / "readme.png")  # no id
    (masks / "ant").mkdir()  # a folder of another name
    splits = root / "splits" / "anterior"
    train = splits.joinpath("train.txt").read_text().split()
    splits.joinpath("val.txt").write_text(splits.joinpath("val.txt").read_text() + train[0] + "\n")
    test = root / "splits" / "posterior" / "test.txt"
    test.write_text(test.read_text() + "999\n")
    labels = json.loads((root / "class_labels.json").read_text())
    labels["4"], labels["5"] = labels["5"], labels["4"]
    (root / "class_labels.json").write_text(json.dumps(labels))
    return {"size mismatch": "Anterior_0001.png", "label ids": "Anterior_0002.png",
            "posterior sternum": "Posterior_0003.png", "empty mask": "Anterior_0004.png",
            "image without mask": "0005_post.jpg", "mask without image": "Anterior_0006.png",
            "duplicate id": "7.png", "layout": "readme.png", "leakage": "val.txt", "unknown id": "test.txt",
            "class labels": "class_labels.json"}


def test_verify_reports_every_planted_problem_at_once(bs80k):
    expected = _plant_every_problem(bs80k)
    report = verify_data(_data_cfg(bs80k), workers=2, progress=False)
    found = {}
    for p in report.problems:
        found.setdefault(p.kind, []).append(p)
    for kind, name in expected.items():
        assert any(name in str(p) for p in found.get(kind, [])), (kind, name, found.get(kind))
    assert all(p.fix for p in report.problems)
    assert any(Path(p.file).name == "ant" for p in found["layout"])
    assert "999" in str(found["unknown id"][0]) and "sternum" in str(found["posterior sternum"][0])
    again = verify_data(_data_cfg(bs80k), progress=False)  # second run: every file from the cache
    assert again.cached == again.checked > 0 and {str(p) for p in again.problems} == {str(p) for p in report.problems}


def test_cache_rereads_a_changed_file(bs80k):
    cfg = _data_cfg(bs80k)
    assert verify_data(cfg, progress=False).ok
    mask = bs80k / "dataset" / "masks" / "anterior" / "Anterior_0004.png"
    Image.fromarray(np.zeros((256, 64), np.uint8)).save(mask)
    report = verify_data(cfg, progress=False)
    assert report.cached == report.checked - 1 and [p.kind for p in report.problems] == ["empty mask"]


def test_bad_layout_is_an_error_before_training_even_unverified(bs80k):
    (bs80k / "dataset" / "splits" / "posterior" / "train.txt").write_text("1\n2\n999\n")
    with pytest.raises(DatasetProblems, match="999"):
        BS80KDataModule(str(bs80k / "dataset"), str(bs80k / "images"), view="both")
    assert Layout(bs80k / "dataset", bs80k / "images", view="anterior").problems == []  # other view untouched


def test_verify_cli_exit_codes_and_training_refuses(bs80k, tmp_path):
    args = [sys.executable, "-m", "bonepatch.verify", f"data.root={bs80k / 'dataset'}",
            f"data.images={bs80k / 'images'}", "progress=false", f"hydra.run.dir={tmp_path / 'h'}"]
    ok = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert ok.returncode == 0 and "no problems found" in ok.stdout, ok.stderr[-2000:]
    Image.fromarray(np.zeros((256, 64), np.uint8)).save(bs80k / "dataset" / "masks" / "anterior" / "Anterior_0004.png")
    bad = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert bad.returncode == 1 and "Anterior_0004.png" in bad.stdout and "empty mask" in bad.stdout
    assert json.loads((tmp_path / "h" / "problems.json").read_text())["problems"][0]["kind"] == "empty mask"
    from bonepatch import train as T
    from train_helpers import compose_cfg

    cfg = compose_cfg(tmp_path, ["experiment=smoke", "data=bs80k", f"data.root={bs80k / 'dataset'}",
                                 f"data.images={bs80k / 'images'}", "~logger"])
    with pytest.raises(SystemExit, match="nothing trained(.|\n)*Anterior_0004.png"):
        T.run(cfg)
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()


def test_verify_any_data_config_folder_and_phantom(tmp_path):
    from bonepatch.data.phantom import write_dataset

    write_dataset(tmp_path / "ds", n=4, seed=0, config=TINY, splits=(0.5, 0.5, 0.0))
    cfg = OmegaConf.load(ROOT / "conf" / "data" / "folder.yaml")
    cfg.train_dataset.root = str(tmp_path / "ds")
    cfg.test_dataset = None
    assert verify_data(cfg, progress=False).ok
    posterior = next(p for p in (tmp_path / "ds" / "keypoints").iterdir() if '"posterior"' in p.read_text())
    mask = tmp_path / "ds" / "masks" / f"{posterior.stem}.png"
    m = np.asarray(Image.open(mask)).copy()
    m[:4, :4] = CLASS_IDS["sternum"]
    Image.fromarray(m).save(mask)
    val = tmp_path / "ds" / "val.txt"
    val.write_text(val.read_text() + (tmp_path / "ds" / "train.txt").read_text().split()[0] + "\n")
    kinds = {p.kind: p for p in verify_data(cfg, progress=False).problems}
    assert set(kinds) == {"posterior sternum", "leakage"} and kinds["posterior sternum"].file == str(mask)
    phantom = OmegaConf.load(ROOT / "conf" / "data" / "phantom.yaml")
    report = verify_data(phantom, progress=False)
    assert report.ok and report.checked == 0 and "nothing on disk" in report.notes[0]
