"""Tests of the procedural bone-scan phantom (bonepatch.data.phantom)."""
import json
import subprocess
import sys

import numpy as np
import pytest

from bonepatch.anatomy import BONE_CLASSES, CLASS_IDS, keypoints_from_mask
from bonepatch.data.phantom import PhantomConfig, render, render_pair, write_dataset

ADULT = PhantomConfig(child_prob=0, truncate_prob=0, missing_limb_prob=0, scoliosis_prob=0,
                      superscan_prob=0)


def test_deterministic_and_distinct():
    a, b, c = render(3, 5), render(3, 5), render(3, 7)
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["mask"], b["mask"])
    np.testing.assert_array_equal(a["keypoints"], b["keypoints"])
    assert not np.array_equal(a["image"], c["image"])
    assert not np.array_equal(render(4, 5)["mask"], a["mask"])


def test_shapes_dtypes_counts_meta():
    cfg = PhantomConfig(counts_range=(4e5, 6e5))
    for i in range(4):
        s = render(1, i, cfg)
        assert s["image"].shape == (1024, 256) and s["image"].dtype == np.float32
        assert s["mask"].shape == (1024, 256) and s["mask"].dtype == np.uint8
        assert s["keypoints"].shape == (16, 3) and s["keypoints"].dtype == np.float32
        assert s["image"].min() >= 0 and np.all(s["image"] == np.rint(s["image"]))
        total = s["image"].sum()
        assert 4e5 * 0.95 < total < 6e5 * 1.05 * 1.05, total  # posterior gets +5%
        assert s["mask"].max() <= 12
        assert s["meta"] == {"case_id": f"phantom_1_{i:06d}", "view": ("anterior", "posterior")[i % 2],
                             "spacing_mm": 2.4, "source": "phantom"}


def test_every_class_on_adult_anterior_no_sternum_posterior():
    for k in range(3):
        ant, post = render_pair(0, k, ADULT)
        assert set(np.unique(ant["mask"])) == {0, *BONE_CLASSES}
        assert set(np.unique(post["mask"])) == {0, *BONE_CLASSES} - {CLASS_IDS["sternum"]}


def test_body_fills_realistic_part_of_frame():
    for k in range(5):
        m = render(0, 2 * k, ADULT)["image"] > 3
        rows = np.flatnonzero(m.sum(1) > 3)
        assert 5 <= rows[0] <= 60 and 0.55 < (rows[-1] - rows[0]) / 1024 < 0.85


def test_posterior_is_mirrored_anterior():
    for k in range(3):
        ant, post = render_pair(2, k, ADULT)
        flipped = ant["mask"][:, ::-1]
        for name in ("humerus", "pelvis", "femur", "lumbar_vertebrae"):
            c = CLASS_IDS[name]
            a, b = flipped == c, post["mask"] == c
            iou = (a & b).sum() / (a | b).sum()
            assert iou > 0.8, (name, iou)
        # the posterior skull is the cranium only (the real maps' rule): inside the whole head
        a, b = flipped == CLASS_IDS["skull"], post["mask"] == CLASS_IDS["skull"]
        assert (a & b).sum() > 0.95 * b.sum() and b.sum() < 0.85 * a.sum()
        # the posterior sacrum region is the anterior one grown (the real maps' is larger there)
        a, b = flipped == CLASS_IDS["sacrum"], post["mask"] == CLASS_IDS["sacrum"]
        assert (a & b).sum() > 0.9 * a.sum() and b.sum() > 1.1 * a.sum()
        # the image is mirrored too: spine brighter posterior, left-right profile correlates
        pa, pp = ant["image"].sum(0)[::-1], post["image"].sum(0)
        assert np.corrcoef(pa, pp)[0, 1] > 0.9


def test_keypoints_agree_with_mask_definition():
    dists, agree = [], []
    cfg = PhantomConfig(truncate_prob=0.3, missing_limb_prob=0.2, scoliosis_prob=0.5, child_prob=0.2)
    for i in range(50):
        s = render(11, i, cfg)
        ref = keypoints_from_mask(s["mask"])
        both = (ref[:, 2] > 0) & (s["keypoints"][:, 2] > 0)
        agree.append(np.mean((ref[:, 2] > 0) == (s["keypoints"][:, 2] > 0)))
        dists.append(np.linalg.norm(ref[both, :2] - s["keypoints"][both, :2], axis=1))
    d = np.concatenate(dists)
    assert d.mean() <= 3.0, d.mean()
    assert np.mean(agree) > 0.97


def test_absent_bones_have_invisible_keypoints():
    cfg = PhantomConfig(missing_limb_prob=1.0, truncate_prob=0, child_prob=0)
    n_missing = 0
    for i in range(8):
        s = render(5, i, cfg)
        vis = s["keypoints"][:, 2]
        np.testing.assert_array_equal(vis, keypoints_from_mask(s["mask"])[:, 2])
        n_missing += (vis == 0).sum() == 2  # a whole arm or leg (an amputated shank keeps all)
        assert np.all(s["keypoints"][vis == 0] == 0)
    assert n_missing >= 3


def test_rib_arcs_label_fewer_pixels_than_region():
    rib = CLASS_IDS["rib"]
    for i in range(2):
        region = render(0, i, PhantomConfig(rib_label="region"))["mask"]
        arcs = render(0, i, PhantomConfig(rib_label="arcs"))["mask"]
        # (v2: the anterior region leaves the lower medial chest free, so the margin is smaller)
        assert (arcs == rib).sum() < 0.9 * (region == rib).sum()


def test_bad_config_names_field_and_options():
    with pytest.raises(ValueError, match="rib_label.*region"):
        PhantomConfig(rib_label="stripes")
    with pytest.raises(ValueError, match="view"):
        PhantomConfig(view="lateral")
    with pytest.raises(ValueError, match="counts_range"):
        PhantomConfig(counts_range=(5, 1))


def _check_layout(out, n):
    from PIL import Image

    cases = sum((out.joinpath(f"{s}.txt").read_text().split() for s in ("train", "val", "test")), [])
    assert sorted(cases) == [f"phantom_0_{i:06d}" for i in range(n)]
    img = np.asarray(Image.open(out / "images" / f"{cases[0]}.png"))
    assert img.dtype == np.uint16 and img.shape == (1024, 256) and img.max() > 0
    assert np.asarray(Image.open(out / "masks" / f"{cases[0]}.png")).max() <= 12
    kp = json.loads((out / "keypoints" / f"{cases[0]}.json").read_text())
    assert len(kp["keypoints"]) == 16 and kp["spacing_mm"] == 2.4


def test_write_dataset_layout(tmp_path):
    write_dataset(tmp_path, 10, seed=0)
    _check_layout(tmp_path, 10)
    splits = [tmp_path.joinpath(f"{s}.txt").read_text().split() for s in ("train", "val", "test")]
    assert len(splits[0]) >= 6 and sum(map(len, splits)) == 10
    for s in splits:  # both views of a subject in the same split
        assert all(f"phantom_0_{int(c[-6:]) ^ 1:06d}" in s for c in s)


def test_cli(tmp_path):
    out, png = tmp_path / "ds", tmp_path / "p.png"
    subprocess.run([sys.executable, "-m", "bonepatch.data.phantom", "--out", str(out), "--n", "4",
                    "--preview", str(png)], check=True, capture_output=True)
    _check_layout(out, 4)
    assert png.stat().st_size > 1000
    png2 = tmp_path / "only.png"
    subprocess.run([sys.executable, "-m", "bonepatch.data.phantom", "--preview", str(png2), "--n", "2"],
                   check=True, capture_output=True)
    assert png2.exists()
    r = subprocess.run([sys.executable, "-m", "bonepatch.data.phantom"], capture_output=True, text=True)
    assert r.returncode != 0 and "--out" in r.stderr


def test_vectorised_rasteriser_matches_per_shape_reference():
    from bonepatch.data.phantom.body import PAINT_ORDER, Body
    from bonepatch.data.phantom.raster import rasterise_all
    from bonepatch.data.phantom.imaging import _mirror, add_focal
    from bonepatch.data.phantom.shapes import attenuation, rasterise
    from bonepatch.data.phantom.subject import sample_subject

    cfg = PhantomConfig(truncate_prob=0.5, scoliosis_prob=0.5, child_prob=0.3)
    cases = [("anterior", "region", "reference"), ("posterior", "region", "reference"),
             ("posterior", "region_stripes", "anatomic"), ("anterior", "arcs", "anatomic")]
    for k, (view, rib, conv) in enumerate(cases):
        body = Body(sample_subject(9, k, cfg), view, rib, 256, conv).build()
        add_focal(body)
        if body.post:
            _mirror(body.shapes, 256)
        rank = {CLASS_IDS[n]: i + 1 for i, n in enumerate(PAINT_ORDER[conv, view])}
        act, lab = np.zeros((1024, 256), np.float32), np.zeros((1024, 256), np.uint8)
        weights = [attenuation(s.depth, s.thick, body.post) for s in body.shapes]
        for s, wt in sorted(zip(body.shapes, weights), key=lambda p: rank.get(p[0].label, 0)):
            rasterise(s, act, lab, wt)
        codes = [rank[s.label] << 4 | s.label if s.label else 0 for s in body.shapes]
        act2, top = rasterise_all(body.shapes, weights, codes, 1024, 256, binned=True)
        np.testing.assert_array_equal(top.reshape(1024, 256) & 15, lab)
        ref = act.reshape(512, 2, 128, 2).sum((1, 3))
        diff = np.abs(act2.reshape(512, 128) - ref)
        assert diff.sum() < 1e-3 * ref.sum() and diff.max() < 0.02 * ref.max()


def test_small_mean_poisson_sampler():
    from scipy import stats

    from bonepatch.data.phantom.imaging import _poisson_small

    rng = np.random.default_rng(0)
    for lam in (0.002, 0.4, 3.3, 9.99):
        x = _poisson_small(np.full(200_000, lam, np.float32), rng).astype(int)
        k = np.arange(x.max() + 1)
        exp = stats.poisson.pmf(k, np.float32(lam)) * x.size
        obs = np.bincount(x)
        m = exp > 5
        chi2 = ((obs[m] - exp[m]) ** 2 / exp[m]).sum()
        assert stats.chi2.sf(chi2, max(m.sum() - 1, 1)) > 1e-3, (lam, chi2)
