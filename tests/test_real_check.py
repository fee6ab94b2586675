"""benchmarks/real_check.py on phantom views with their own masks as the "reference"."""
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import real_check  # noqa: E402

from bonepatch.data.phantom import PhantomConfig, render_pair  # noqa: E402


def _views(tmp_path):
    img, ref = tmp_path / "images", tmp_path / "ref"
    img.mkdir()
    ref.mkdir()
    cfg = PhantomConfig(height=256, width=64, mm_per_px=9.6, truncate_prob=0, child_prob=0,
                        missing_limb_prob=0)
    ant, post = render_pair(3, 0, cfg)
    for s, tag in ((ant, "ant"), (post, "post")):
        Image.fromarray(np.clip(s["image"], 0, 65535).astype(np.uint16)).save(img / f"case_{tag}.png")
        Image.fromarray(s["mask"]).save(ref / f"case_{tag}.png")
    return img, ref, ant, post


def test_dice_and_order_checks_on_truth():
    ant, post = render_pair(0, 0, PhantomConfig(truncate_prob=0, child_prob=0, missing_limb_prob=0))
    for s in (ant, post):
        assert all(v == 1.0 for v in real_check.dice_per_class(s["mask"], s["mask"]).values())
        checks = real_check.order_checks(s["mask"], s["meta"]["view"])
        assert all(checks.values()) and len(checks) >= 3, checks
        assert not real_check.order_checks(s["mask"][::-1], s["meta"]["view"])["vertical_order"]
    d = real_check.dice_per_class(ant["mask"], post["mask"], skip=("sternum",))
    assert "sternum" not in d and 0 <= min(d.values()) < 1


def test_real_check_end_to_end(tmp_path, tiny_ckpt):
    img, ref, ant, _ = _views(tmp_path)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "benchmarks.md").write_text("# Benchmarks\n\nkeep me\n")
    r = real_check.main(["--images", str(img / "case_ant.png"), str(img / "case_post.png"),
                         "--reference", str(ref), "--ckpt", str(tiny_ckpt), "--out", str(tmp_path / "out"),
                         "--skip-posterior", "sternum,clavicle", "--docs", str(docs), "--name", "tiny"])
    saved = json.loads((tmp_path / "out" / "real_check.json").read_text())
    assert saved["views"][0]["view"] == "case_ant" and len(saved["views"]) == 2
    assert "sternum" not in saved["views"][1]["dice"]
    assert all(0 <= d <= 1 for v in saved["views"] for d in v["dice"].values())
    assert np.isclose(r["mean_over_classes"], np.mean(list(r["per_class"].values())))
    assert all(all(v["reference_checks"].values()) for v in saved["views"])
    assert (tmp_path / "out" / "case_ant_check.png").exists() and (docs / "img" / "real_check_tiny.png").exists()
    md = (docs / "benchmarks.md").read_text()
    assert "keep me" in md and "<!-- real_check:tiny:start -->" in md and "case_post" in md
