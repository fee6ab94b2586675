"""benchmarks/compare.py end to end on the tiny setting (so the benchmark cannot rot)."""
from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import compare  # noqa: E402
import compare_report  # noqa: E402


def test_compare_tiny_end_to_end(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "benchmarks.md").write_text("# Benchmarks\n\n## Other section\nkeep me\n")
    compare.main(["--tiny", "--methods", "staged,single_stage", "--render-workers", "1",
                  "--out-dir", str(tmp_path / "runs"), "--docs", str(docs)])

    report = json.loads((docs / "benchmarks" / "compare_tiny.json").read_text())
    assert set(report["methods"]) == {"staged", "single_stage"}
    assert report["budget"]["steps"] == 6 and report["data"]["test_views"] == 4
    for name, r in report["methods"].items():
        for key in ("dice_mean", "params", "infer_device_b1_s", "infer_device_batched_s", "cpu_peak_rss_mb",
                    "train_wall_s"):
            assert isinstance(r[key], (int, float)) and math.isfinite(r[key]), (name, key, r.get(key))
        assert 0.0 <= r["dice_mean"] <= 1.0 and r["params"] > 1e5
    assert math.isfinite(report["methods"]["staged"]["nme"])  # keypoint metrics for the pipeline
    assert "nme" not in report["methods"]["single_stage"]
    assert {t["status"] for t in report["targets"]} <= {"met", "NOT met", "n/a"}

    rows = list(csv.DictReader((docs / "benchmarks" / "compare_tiny.csv").open()))
    assert [r["method"] for r in rows] == ["staged", "single_stage"]
    assert all(0.0 <= float(r["dice_mean"]) <= 1.0 for r in rows)

    for png in ("compare_tiny_dice.png", "compare_tiny_overlays.png"):
        assert (docs / "img" / png).stat().st_size > 1000
    md = (docs / "benchmarks.md").read_text()
    assert "keep me" in md and md.count("<!-- compare:tiny:start -->") == 1
    assert "| staged |" in md and "| single_stage |" in md


def test_replace_section_keeps_other_sections(tmp_path):
    md = tmp_path / "benchmarks.md"
    md.write_text("intro\n<!-- compare:cpu:start -->\nold\n<!-- compare:cpu:end -->\noutro\n")
    compare_report.replace_section(md, "cpu", "new table")
    compare_report.replace_section(md, "gpu", "gpu table")
    compare_report.replace_section(md, "cpu", "newer table")
    text = md.read_text()
    assert text.startswith("intro\n") and "outro" in text and "old" not in text and "new table" not in text
    assert "newer table" in text and "gpu table" in text
    assert text.count("compare:cpu:start") == 1 and text.count("compare:gpu:end") == 1


def test_set_overrides_apply_where_they_fit():
    import compare_lib as lib
    import pytest

    prof = {**lib.PROFILES["tiny"], "overrides": ["model.margin=0.3", "++patches[0].margin={bottom: 0.25}"]}
    joint = lib.compose_method("joint", prof, 6, ROOT / "outputs" / "unused")
    single = lib.compose_method("single_stage", prof, 6, ROOT / "outputs" / "unused")
    assert joint.model.margin == 0.3 and joint.model.patches[0].margin == {"bottom": 0.25}
    assert list(joint.applied_overrides) == prof["overrides"]
    assert "margin" not in single.model and "model.margin=0.3" not in single.applied_overrides
    with pytest.raises(ValueError, match="link"):  # would silently replace model.patches: ${patches}
        lib.compose_method("joint", {**prof, "overrides": ["++model.patches[0].margin={top: 1}"]}, 6, ROOT)
    with pytest.raises(SystemExit, match="no method"):
        compare.main(["--tiny", "--set", "model.no_such_key=1"])


def test_over_seeds_mean_sd_and_paired_lead():
    def run(seed, joint, base):
        return ({"seed": seed, "dice_mean": joint, "dice_skull": joint, "steps": 6, "params": 10, "model": "M"},
                {"seed": seed, "dice_mean": base, "dice_skull": base, "steps": 6, "params": 5, "model": "S"})
    pairs = [run(0, 0.80, 0.70), run(1, 0.90, 0.70), run(2, 0.70, 0.76)]
    runs = {"joint": [a for a, _ in pairs], "single_stage": [b for _, b in pairs]}
    joint = compare_report.over_seeds(runs["joint"])
    assert joint["dice_mean"] == pytest.approx(0.80) and joint["sd"]["dice_mean"] == pytest.approx(0.10)
    assert joint["steps"] == 6 and isinstance(joint["steps"], int) and joint["model"] == "M"
    assert joint["seed"] == [0, 1, 2] and [r["dice_skull"] for r in joint["per_seed"]] == [0.80, 0.90, 0.70]
    assert compare_report.over_seeds(runs["joint"][:1]) is runs["joint"][0]  # one seed: unchanged
    results = {m: compare_report.over_seeds(r) for m, r in runs.items()}
    lead = compare_report.paired_lead(results, "single_stage")
    assert lead == pytest.approx([0.10, 0.20, -0.06])
    unpaired = {"joint": results["joint"], "single_stage": compare_report.over_seeds(runs["single_stage"][::-1])}
    assert compare_report.paired_lead(unpaired, "single_stage") is None  # seeds not in the same order
    row = compare_report.targets(results, "cpu", False)[1]
    assert row["value"] == pytest.approx(0.08) and row["status"] == "met" and "+0.100, +0.200, -0.060" in row["note"]
    assert "| joint | **0.80 ± 0.10** |" in "\n".join(compare_report.class_table(results))


def test_seeds_reach_the_config_and_bad_seeds_are_refused():
    import compare_lib as lib
    prof = dict(lib.PROFILES["tiny"])
    assert lib.compose_method("joint", {**prof, "seed": 7}, 6, Path("/tmp")).seed == 7
    assert lib.compose_method("joint", {**prof, "seed": None}, 6, Path("/tmp")).seed == 42  # conf/train.yaml
    assert compare.parse_seeds("0, 1,2") == [0, 1, 2] and compare.parse_seeds(None) == [None]
    for bad in ("a,b", "1,1", ""):
        with pytest.raises(SystemExit, match="--seeds"):
            compare.parse_seeds(bad)


def test_compare_tiny_two_seeds(tmp_path):
    docs = tmp_path / "docs"
    compare.main(["--tiny", "--methods", "single_stage", "--seeds", "3,4", "--render-workers", "1",
                  "--out-dir", str(tmp_path / "runs"), "--docs", str(docs)])
    report = json.loads((docs / "benchmarks" / "compare_tiny.json").read_text())
    r = report["methods"]["single_stage"]
    assert report["seeds"] == [3, 4] and r["seed"] == [3, 4] and [p["seed"] for p in r["per_seed"]] == [3, 4]
    assert math.isfinite(r["sd"]["dice_mean"]) and r["dice_mean"] == pytest.approx(
        sum(p["dice_mean"] for p in r["per_seed"]) / 2)
    assert (tmp_path / "runs" / "seed3" / "single_stage").is_dir() and (tmp_path / "runs" / "seed4").is_dir()
    assert "mean ± sd over seeds" in (docs / "benchmarks.md").read_text()
