"""benchmarks/profile_step.py: forward ranges and backward nodes land on the right stage."""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import profile_step  # noqa: E402
from bonepatch.value_checks import stage  # noqa: E402


def test_backward_time_is_charged_to_the_forward_stage():
    big, small = torch.nn.Linear(256, 256), torch.nn.Linear(256, 2)
    x = torch.rand(512, 256)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        with torch.profiler.record_function("bonepatch.step"):
            with stage("segmenter"):
                h = big(x).relu()
                for _ in range(20):
                    h = big(h).relu()
            with stage("paste"):
                y = small(h).sum()
            with torch.profiler.record_function("bonepatch.backward"):
                y.backward()
    per = profile_step.per_step(profile_step.attribute(prof.events(), "cpu"), 1)
    assert per["segmenter"]["backward_ms"] > 5 * per["paste"]["backward_ms"] > 0  # 21 big layers vs 1 small
    assert per["segmenter"]["forward_ms"] > per["paste"]["forward_ms"] > 0
    text = profile_step.table(per, per["step"]["forward_ms"], {"cached": 0.001}, dev=False)
    assert "| segmenter |" in text and "data: cached" in text
