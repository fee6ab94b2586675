"""Realism statistics (benchmarks/realism_stats.py) and the label-proportion measure."""
import sys
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from label_proportions import proportions  # noqa: E402
from phantom_realism import compare  # noqa: E402
from realism_stats import as_8bit, image_stats, noise_index, spectral_slope  # noqa: E402


def _body(h=512, w=128, level=100.0):
    img = np.zeros((h, w))
    img[40:480, 30:98] = level
    return img


def test_noise_index_of_known_gaussian_noise():
    rng = np.random.default_rng(0)
    base = gaussian_filter(_body(), 4.0)  # soft edges, as a blurred scan has
    img = base + rng.normal(0, 1, base.shape) * 0.1 * base
    grain, acorr = noise_index(img, base > 5)
    # residual of a 3x3 mean of white noise: sd = sqrt(8/9) sigma; lag-1 correlation -1/6
    assert abs(grain - np.sqrt(8 / 9) * 0.1) < 0.005, grain
    assert abs(acorr + 1 / 6) < 0.02, acorr


def test_spectral_slope_white_vs_blurred():
    rng = np.random.default_rng(1)
    body = _body() > 0
    white = rng.normal(0, 1, body.shape) * body
    assert abs(spectral_slope(white, body)) < 0.4
    assert spectral_slope(gaussian_filter(white, 2.0), body) < -3


def test_geometry_stats_and_8bit_mapping():
    img = _body()
    s = image_stats(img)
    assert abs(s["body_h"] - 440 / 512) < 0.03 and abs(s["body_w"] - 68 / 128) < 0.1
    assert abs(s["body_frac"] - 440 * 68 / (512 * 128)) < 0.1  # the mask's smoothing adds a rim
    counts = np.random.default_rng(2).poisson(_body(level=5.0)).astype(np.float32)
    e = as_8bit(counts)
    assert e.max() <= 255 and abs(e.sum() / 1e6 - 1) < 0.02
    scaled = image_stats(counts * 7.0)  # scale-free
    assert np.isclose(scaled["noise"], image_stats(counts)["noise"], rtol=1e-6)


def test_compare_flags_outside_tolerance():
    a = {k: 1.0 for k in image_stats(_body())}
    b = dict(a, noise=1.3, slope=1.5)
    rows = {r["stat"]: r for r in compare([a], [b])}
    assert not rows["noise"]["ok"] and not rows["slope"]["ok"] and rows["p50"]["ok"]


def test_label_proportions_of_a_toy_map():
    m = np.zeros((100, 40), np.uint8)
    m[0:20, 10:30] = 1   # skull
    m[50:100, 5:10] = 12  # femur: L = 99
    p = proportions(m)
    assert abs(p["skull"]["width"] - 20 / 99) < 1e-6 and p["femur"]["bot"] > 0.95


def test_phantom_realism_cli_on_a_phantom_as_real(tmp_path):
    from PIL import Image

    from bonepatch.data.phantom import render
    from phantom_realism import main

    png = tmp_path / "case_ant.png"
    Image.fromarray(as_8bit(render(7, 0)["image"]).astype(np.uint8)).save(png)
    rows = main(["--n", "2", "--seed", "7", "--as-8bit", "--real", str(png), "--montage",
                 str(tmp_path / "m.png"), "--json", str(tmp_path / "r.json")])
    by = {r["stat"]: r for r in rows}
    assert by["body_h"]["ok"] and 0.8 < by["noise"]["ratio"] < 1.25  # view 0 is among the phantoms
    assert (tmp_path / "m.png").stat().st_size > 1000 and (tmp_path / "r.json").exists()
