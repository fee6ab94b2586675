import dataclasses
import json
import math
import sys
import types
from pathlib import Path

import hydra
import lightning as L
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

import bonepatch.data
from bonepatch.anatomy import KEYPOINTS, NUM_CLASSES, flip_keypoints, keypoints_from_mask
from bonepatch.data import dataset as D
from bonepatch.data.augment import BatchAugment, augment_batch
from bonepatch.data.datamodule import BoneScanDataModule, collate
from bonepatch.data.io import BoneScanInputError

CONF = Path(__file__).resolve().parents[1] / "conf" / "data"
POST_IOP = [-1, 0, 0, 0, 0, -1]


def _folder(root, scan, mask, ids=("a", "b", "c"), masks=True):
    """A CONTRACTS folder layout: 16-bit PNG scans (shifted per case) + 8-bit masks."""
    for i, cid in enumerate(ids):
        (root / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.roll(scan, i, 0)).save(root / "images" / f"{cid}.png")
        if masks:
            (root / "masks").mkdir(exist_ok=True)
            Image.fromarray(np.roll(mask, i, 0)).save(root / "masks" / f"{cid}.png")
    return root


def test_folder_layout_sample_contract_and_split_lists(tmp_path, toy_scan, toy_mask):
    root = _folder(tmp_path / "ds", toy_scan, toy_mask)
    (root / "train.txt").write_text("a\nc\n")
    (root / "val.txt").write_text("b\n")
    ds = D.FolderDataset(root)
    assert [c.case_id for c in ds.cases] == ["a", "b", "c"]
    s = ds[1]
    assert s["image"].shape == (1, 128, 48) and s["image"].dtype == torch.float32
    assert s["mask"].dtype == torch.int64 and s["keypoints"].shape == (16, 3)
    np.testing.assert_array_equal(s["image"][0].numpy(), np.roll(toy_scan, 1, 0))
    np.testing.assert_array_equal(s["keypoints"].numpy(), keypoints_from_mask(np.roll(toy_mask, 1, 0)))
    assert s["meta"]["case_id"] == "b" and s["meta"]["view"] == "unknown" and math.isnan(s["meta"]["spacing_mm"])
    assert [c.case_id for c in D.FolderDataset(root, split="train").cases] == ["a", "c"]
    assert [c.case_id for c in D.FolderDataset(root, split="val").cases] == ["b"]
    with pytest.raises(BoneScanInputError, match=r"test\.txt.*not found"):
        D.FolderDataset(root, split="test")
    (root / "test.txt").write_text("a\nzzz\n")
    with pytest.raises(BoneScanInputError, match=r"test\.txt.*'zzz'"):
        D.FolderDataset(root, split="test")


def test_keypoints_json_used_and_derived_ones_cached(tmp_path, toy_scan, toy_mask, monkeypatch):
    root = _folder(tmp_path / "ds", toy_scan, toy_mask, ids=("a", "b"))
    kp = np.arange(48, dtype=np.float32).reshape(16, 3)
    (root / "keypoints").mkdir()
    (root / "keypoints" / "a.json").write_text(json.dumps(  # names reversed: the reader reorders them
        {"keypoints": kp[::-1].tolist(), "names": KEYPOINTS[::-1], "view": "posterior", "spacing_mm": 2.4}))
    first = D.FolderDataset(root)
    a, b = first[0], first[1]
    np.testing.assert_array_equal(a["keypoints"].numpy(), kp)
    assert a["meta"]["view"] == "posterior" and a["meta"]["spacing_mm"] == 2.4
    assert len(list((root / ".bonepatch_cache").glob("kp_*.npy"))) == 1  # b's derived keypoints
    monkeypatch.setattr(D, "keypoints_from_mask", lambda m: pytest.fail("cache not used"))
    np.testing.assert_array_equal(D.FolderDataset(root)[1]["keypoints"], b["keypoints"])
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")  # an unwritable cache dir must not fail the load
    monkeypatch.setattr(D, "keypoints_from_mask", keypoints_from_mask)
    assert D.FolderDataset(root, cache_dir=blocked / "cache")[1]["keypoints"].shape == (16, 3)
    (root / "keypoints" / "b.json").write_text('{"keypoints": [[1, 2, 1]]}')
    with pytest.raises(BoneScanInputError, match=r"b\.json.*shape"):
        D.FolderDataset(root)[1]


def test_nnunet_layout(tmp_path, toy_scan, toy_mask):
    root = tmp_path / "Dataset001_Bone"
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (root / sub).mkdir(parents=True)
    for cid in ("p1", "p2"):
        Image.fromarray(toy_scan).save(root / "imagesTr" / f"{cid}_0000.png")
        Image.fromarray(toy_mask).save(root / "labelsTr" / f"{cid}.png")
    Image.fromarray(toy_scan).save(root / "imagesTs" / "q9_0000.png")
    (root / "dataset.json").write_text('{"labels": {"background": 0, "skull": 1}, "file_ending": ".png"}')
    train = D.FolderDataset(root, split="train")
    assert [c.case_id for c in train.cases] == ["p1", "p2"]
    np.testing.assert_array_equal(train[0]["mask"].numpy(), toy_mask)
    test = D.FolderDataset(root, split="test", require_masks=False)
    assert [c.case_id for c in test.cases] == ["q9"] and "mask" not in test[0]
    with pytest.raises(BoneScanInputError, match=r"q9_0000\.png.*require_masks=False"):
        D.FolderDataset(root)  # every case, and imagesTs has no labels


def test_two_frame_dicom_two_samples_and_mirroring(tmp_path, toy_scan, toy_mask, write_dicom):
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    ant, post = toy_scan, toy_scan[:, ::-1]  # posterior stored as seen from behind
    write_dicom(root / "images" / "wb.dcm", [ant, post], codes=[("RT ANT",) * 2, ("LT POST",) * 2],
                iops=[[1, 0, 0, 0, 0, -1], POST_IOP])
    Image.fromarray(toy_mask).save(root / "masks" / "wb_anterior.png")
    Image.fromarray(np.ascontiguousarray(toy_mask[:, ::-1])).save(root / "masks" / "wb_posterior.png")
    (root / "train.txt").write_text("wb\n")  # a DICOM stem selects both views
    raw, mirrored = D.FolderDataset(root, split="train"), D.FolderDataset(root, mirror_posterior=True)
    assert [c.case_id for c in raw.cases] == ["wb_anterior", "wb_posterior"]
    p_raw, p_mir = raw[1], mirrored[1]
    assert p_raw["meta"]["view"] == "posterior" and not p_raw["meta"]["mirrored"] and p_mir["meta"]["mirrored"]
    assert p_raw["meta"]["spacing_mm"] == 2.4
    np.testing.assert_array_equal(p_mir["image"][0].numpy(), ant)  # back in the anterior orientation
    np.testing.assert_array_equal(p_mir["mask"].numpy(), toy_mask)
    np.testing.assert_allclose(p_mir["keypoints"].numpy(), flip_keypoints(p_raw["keypoints"].numpy(), 48))
    vis = p_mir["keypoints"][:, 2] > 0
    np.testing.assert_allclose(p_mir["keypoints"][vis].numpy(), keypoints_from_mask(toy_mask)[vis.numpy()])
    assert "Doe" not in repr(p_mir["meta"]) and "4711" not in repr(p_mir["meta"])
    assert not mirrored[0]["meta"]["mirrored"]


def test_resize(tmp_path, toy_scan, toy_mask):
    root = _folder(tmp_path / "ds", toy_scan, toy_mask, ids=("a",))
    big, small = D.FolderDataset(root)[0], D.FolderDataset(root, size=(64, 24))[0]
    assert small["image"].shape == (1, 64, 24) and small["mask"].shape == (64, 24)
    assert float(small["image"].sum()) == pytest.approx(float(big["image"].sum()), rel=0.02)  # counts preserved
    assert set(small["mask"].unique().tolist()) <= set(big["mask"].unique().tolist())
    top = keypoints_from_mask(toy_mask)[0]  # skull_top (23.5, 8) -> ((23.5 + .5) / 2 - .5, (8 + .5) / 2 - .5)
    np.testing.assert_allclose(small["keypoints"][0, :2].numpy(), [(top[0] + .5) / 2 - .5, (top[1] + .5) / 2 - .5])


def test_layout_errors(tmp_path, toy_scan, toy_mask):
    (tmp_path / "empty").mkdir()
    with pytest.raises(BoneScanInputError, match=r"no images found.*images/\*.*imagesTr/\*_0000"):
        D.FolderDataset(tmp_path / "empty")
    root = _folder(tmp_path / "nomask", toy_scan, toy_mask, ids=("lonely",), masks=False)
    with pytest.raises(BoneScanInputError, match=r"no mask.*lonely\.png"):
        D.FolderDataset(root)
    assert "mask" not in D.FolderDataset(root, require_masks=False)[0]
    root = _folder(tmp_path / "small", toy_scan, toy_mask[:64], ids=("x",))
    with pytest.raises(BoneScanInputError, match=r"x\.png.*differs from its image"):
        D.FolderDataset(root)[0]


def _fake_phantom(monkeypatch, skeleton):
    """A stand-in phantom module with the agreed API (render(seed, index, config), PhantomConfig)."""
    @dataclasses.dataclass
    class PhantomConfig:
        height: int = 128

    def render(seed, index, config=None):
        rng = np.random.default_rng([seed, index])
        mask = np.roll(skeleton, int(rng.integers(0, 10)), 0)[: config.height if config else 128]
        image = rng.poisson(1 + 40 * (mask > 0)).astype(np.float32)
        return {"image": image, "mask": mask, "keypoints": keypoints_from_mask(mask),
                "meta": {"view": "anterior", "spacing_mm": 2.4}}

    fake = types.SimpleNamespace(render=render, PhantomConfig=PhantomConfig)
    monkeypatch.setitem(sys.modules, "bonepatch.data.phantom", fake)
    monkeypatch.setattr(bonepatch.data, "phantom", fake, raising=False)


def test_phantom_dataset_contract_and_determinism(monkeypatch, toy_mask):
    _fake_phantom(monkeypatch, toy_mask)
    a, b = D.PhantomDataset(0, 4, {"height": 100}), D.PhantomDataset(1, 4)
    s = a[2]
    assert s["image"].shape == (1, 100, 48) and s["mask"].dtype == torch.int64 and len(a) == 4
    assert s["meta"] == {"case_id": "phantom_0_000002", "view": "anterior", "spacing_mm": 2.4,
                         "source": "phantom", "mirrored": False}
    assert torch.equal(a[2]["image"], s["image"]) and not torch.equal(b[2]["image"][:, :100], s["image"])
    with pytest.raises(IndexError):
        a[4]


def test_real_phantom_sample_contract():
    cfg = {"height": 256, "width": 64, "view": "posterior"}
    s, m = D.PhantomDataset(3, 2, cfg)[1], D.PhantomDataset(3, 2, cfg, mirror_posterior=True)[1]
    assert s["image"].shape == (1, 256, 64) and s["mask"].shape == (256, 64) and s["mask"].dtype == torch.int64
    assert s["keypoints"].shape == (16, 3) and int(s["mask"].max()) < NUM_CLASSES and s["image"].min() >= 0
    assert s["meta"]["view"] == "posterior" and m["meta"]["mirrored"] and not s["meta"]["mirrored"]
    assert torch.equal(m["mask"], s["mask"].flip(-1))
    np.testing.assert_allclose(m["keypoints"].numpy(), flip_keypoints(s["keypoints"].numpy(), 64))


def test_hydra_configs_build_datamodules(monkeypatch, tmp_path, toy_scan, toy_mask):
    _fake_phantom(monkeypatch, toy_mask)
    cfg = OmegaConf.create({"data": OmegaConf.load(CONF / "phantom.yaml")})
    cfg.data.train_dataset.config = {"height": 96}
    dm = hydra.utils.instantiate(cfg.data)
    assert [dm.datasets[k].seed for k in ("train", "val", "test")] == [0, 1, 2]
    assert next(iter(dm.val_dataloader()))["image"].shape == (4, 1, 96, 48)  # config shared by val
    cfg = OmegaConf.create({"data": OmegaConf.load(CONF / "folder.yaml")})
    with pytest.raises(Exception, match="Missing mandatory value"):
        hydra.utils.instantiate(cfg.data)
    root = _folder(tmp_path / "ds", toy_scan, toy_mask)
    (root / "train.txt").write_text("a\nb\n")
    (root / "val.txt").write_text("c\n")
    (root / "test.txt").write_text("c\n")
    cfg.data.train_dataset.root, cfg.data.train_dataset.size = str(root), [64, 24]
    dm = hydra.utils.instantiate(cfg.data)
    assert len(dm.datasets["train"]) == 2 and dm.datasets["val"].size == (64, 24)


def test_datamodule_collate_and_seeded_shuffle(tmp_path, toy_scan, toy_mask):
    ds = D.FolderDataset(_folder(tmp_path / "ds", toy_scan, toy_mask, ids=tuple("abcdef")))
    dm = BoneScanDataModule(ds, ds, None, batch_size=3)
    batch = next(iter(dm.val_dataloader()))
    assert batch["image"].shape == (3, 1, 128, 48) and batch["mask"].shape == (3, 128, 48)
    assert batch["meta"]["case_id"] == ["a", "b", "c"] and batch["meta"]["mirrored"] == [False] * 3

    def order():
        L.seed_everything(7)
        return [cid for b in dm.train_dataloader() for cid in b["meta"]["case_id"]]
    assert order() == order() and sorted(order()) == list("abcdef")
    with pytest.raises(ValueError, match="no test_dataset"):
        dm.test_dataloader()
    assert BoneScanDataModule(num_workers=2).persistent_workers and not dm.persistent_workers


def _batch(toy_scan, toy_mask, n=4):
    samples = [D.make_sample(toy_scan.astype(np.float32), toy_mask, keypoints_from_mask(toy_mask),
                             {"case_id": str(i)}) for i in range(n)]
    return collate(samples)


def test_augment_flip_consistent_with_mask_keypoints(toy_scan, toy_mask):
    batch = _batch(toy_scan, toy_mask)
    out = augment_batch(batch, rotation=0, scale=(1, 1), translate=(0, 0), flip_p=1.0, intensity=(1, 1))
    torch.testing.assert_close(out["image"], batch["image"].flip(-1), atol=1e-3, rtol=0)
    for i in range(4):
        derived = keypoints_from_mask(out["mask"][i].numpy())
        np.testing.assert_allclose(out["keypoints"][i].numpy(), derived, atol=1e-4)  # pairs swapped
    assert out["meta"] == batch["meta"]


def test_augment_random_affine_is_seeded_and_keeps_ids(toy_scan, toy_mask):
    batch, aug = _batch(toy_scan, toy_mask), BatchAugment(rotation=10, scale=(0.9, 1.1))
    torch.manual_seed(3)
    out = aug(batch)
    torch.manual_seed(3)
    again = aug(batch)
    assert torch.equal(out["image"], again["image"]) and torch.equal(out["keypoints"], again["keypoints"])
    assert out["mask"].dtype == torch.int64 and set(out["mask"].unique().tolist()) <= set(range(NUM_CLASSES))
    for i in range(4):  # geometry agrees with the mask within the nearest-resampling error
        derived, kp = keypoints_from_mask(out["mask"][i].numpy()), out["keypoints"][i].numpy()
        both = (derived[:, 2] > 0) & (kp[:, 2] > 0)
        assert both.sum() >= 12 and np.abs(derived[both, :2] - kp[both, :2]).max() < 3.0


def test_augment_keypoints_leaving_image_invisible(toy_scan, toy_mask):
    batch = _batch(toy_scan, toy_mask, n=16)
    batch["keypoints"][:, 0] = torch.tensor([0.0, 60.0, 1.0])  # on the left edge
    torch.manual_seed(0)
    out = augment_batch(batch, rotation=0, scale=(1, 1), translate=(0.2, 0), flip_p=0.0)
    x, vis = out["keypoints"][:, 0, 0], out["keypoints"][:, 0, 2]
    assert (vis == 0).any() and (vis == 1).any() and torch.equal(vis == 0, x < 0)
