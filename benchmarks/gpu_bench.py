"""Joint vs single-stage on one GPU, same run: training and inference views/s, memory, Dice.

One command for a device machine (``bash benchmarks/gpu_run.sh`` installs the missing wheels and
calls this), sized to finish in <= 8 minutes on one H200 at the real setting: phantom rendered
once with every core (``CachedDataset``), then for ``joint`` and ``single_stage`` in turn the
same number of optimiser steps at batch 64, 1024 x 256, bf16 autocast, channels_last, AdamW with
the configs' learning rate and gradient clipping:

* training views/s through a pinned, multi-worker DataLoader, and on one batch held on the
  device (no loader), from steady-state steps (the first ``--skip`` left out);
* inference views/s (eval, inference_mode, same precision and memory format, batch ``--batch``);
* peak GPU memory of training and of inference;
* test-set mean Dice of the trained models (the comparison's accuracy at this budget).

The joint model's boxes come from the true keypoints with a probability decaying from 1 to 0.2
over the first half (conf/experiment/joint.yaml's schedule). Results: JSON (``--json``) and the
``gpu_bench:<name>`` section of ``<docs>/benchmarks.md`` naming the card.

    python benchmarks/gpu_bench.py                                  # the device run (cuda)
    python benchmarks/gpu_bench.py --device cpu --tiny --docs /tmp/d  # CPU smoke run (seconds)
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import bench_utils as bench  # noqa: E402
import compare_report as rep  # noqa: E402
from profile_step import ROOT, build_module, set_teacher_forcing  # noqa: E402

METHODS = ("joint", "single_stage")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--tiny", action="store_true", help="seconds-long smoke setting (256x64, batch 2, few steps)")
    p.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"), help="default 1024 256")
    p.add_argument("--batch", type=int, default=None, help="default 64")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps per method (default 300)")
    p.add_argument("--budget-s", type=float, default=300.0,
                   help="training seconds for both methods together: fewer steps if the probe predicts more")
    p.add_argument("--skip", type=int, default=None, help="steps left out of the timing (default 10)")
    p.add_argument("--preloaded-steps", type=int, default=None, help="steps on one device-held batch (default 20)")
    p.add_argument("--train-views", type=int, default=None, help="rendered training views (default 2048)")
    p.add_argument("--test-views", type=int, default=None, help="rendered test views (default 256)")
    p.add_argument("--loader-workers", type=int, default=None, help="DataLoader workers (default 8)")
    p.add_argument("--render-workers", type=int, default=0, help="processes rendering the phantom (0 = all cores)")
    p.add_argument("--precision", default=None, help="bf16-mixed (default) | 32-true")
    p.add_argument("--no-channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile(fullgraph=True) both models (untested on GPU)")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--name", default=None, help="section / file name (default: gpu, or cpu_smoke with --tiny)")
    p.add_argument("--docs", default=str(ROOT / "docs"), help="folder receiving benchmarks.md's section")
    p.add_argument("--json", default=None, help="JSON path (default <docs>/benchmarks/gpu_bench_<name>.json)")
    p.add_argument("--from-json", default=None, metavar="PATH",
                   help="no run: write a device run's JSON (from $OUT) into <docs> (JSON + benchmarks.md section)")
    a = p.parse_args(argv)
    big = dict(size=(1024, 256), batch=64, steps=300, skip=10, preloaded_steps=20, train_views=2048,
               test_views=256, loader_workers=8, precision="bf16-mixed")
    tiny = dict(size=(256, 64), batch=2, steps=3, skip=1, preloaded_steps=1, train_views=8, test_views=4,
                loader_workers=0, precision="32-true")
    for k, v in (tiny if a.tiny else big).items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    a.name = a.name or ("cpu_smoke" if a.tiny else "gpu")
    a.channels_last = not a.no_channels_last and not a.tiny
    return a


def make_data(a) -> tuple[dict, dict]:
    from bonepatch.data.cache import CachedDataset
    from bonepatch.data.dataset import PhantomDataset
    cfg = {"height": a.size[0], "width": a.size[1], "view": "both", "rib_label": "region"}
    if a.size[0] < 1024:
        cfg["mm_per_px"] = 2.4 * 1024 / a.size[0]  # the whole body at a lower resolution
    sets, info = {}, {}
    for split, seed, n in (("train", 0, a.train_views), ("test", 2, a.test_views)):
        t0 = time.perf_counter()
        sets[split] = CachedDataset(PhantomDataset(seed, n, config=cfg), workers=a.render_workers)
        info[f"render_{split}_s"] = time.perf_counter() - t0
        info[f"{split}_views"] = n
    info["render_views_per_s"] = (a.train_views + a.test_views) / (info["render_train_s"] + info["render_test_s"])
    return sets, info


def loader(dataset, a, shuffle: bool):
    from torch.utils.data import DataLoader
    from bonepatch.data.datamodule import collate
    w = a.loader_workers
    return DataLoader(dataset, batch_size=a.batch, shuffle=shuffle, drop_last=shuffle, num_workers=w,
                      pin_memory=a.device.startswith("cuda"), persistent_workers=w > 0, collate_fn=collate,
                      prefetch_factor=4 if w else None)


def to_device(batch, device):
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


def step(module, optimizer, batch, a, clip: float):
    with bench.autocast_for(torch.device(a.device), a.precision):
        loss = module._step(batch, "train")
    loss.backward()
    if clip:
        torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def train(method: str, module, optimizer, data, a, steps: int, clip: float) -> dict:
    """``steps`` loader-fed steps (teacher forcing decaying over the first half), then a few on one batch."""
    module.train()
    times, it, dl = [], None, loader(data, a, shuffle=True)  # persistent workers across epochs
    tf_steps = max(1, steps // 2)
    bench._sync(a.device)
    last = time.perf_counter()
    while len(times) < steps:
        it = it or iter(dl)
        try:
            batch = next(it)
        except StopIteration:
            it = None
            continue
        if method == "joint":
            set_teacher_forcing(module, 1.0 + (0.2 - 1.0) * min(len(times) / tf_steps, 1.0))
        step(module, optimizer, to_device(batch, a.device), a, clip)
        bench._sync(a.device)
        now = time.perf_counter()
        times.append(now - last)
        last = now
    held = to_device(batch, a.device)
    pre = []
    for _ in range(a.preloaded_steps + 1):
        bench._sync(a.device)
        t0 = time.perf_counter()
        step(module, optimizer, held, a, clip)
        bench._sync(a.device)
        pre.append(time.perf_counter() - t0)
    steady = times[a.skip:] or times
    s_loader, s_held = statistics.median(steady), statistics.median(pre[1:] or pre)  # first: warm-up
    return {"steps": steps, "train_wall_s": sum(times), "step_s_loader": s_loader, "step_s_preloaded": s_held,
            "train_views_per_s": a.batch / s_loader, "train_views_per_s_preloaded": a.batch / s_held,
            "loader_overhead": s_loader / s_held - 1.0}


@torch.no_grad()
def test_dice(module, data, a) -> float:
    from bonepatch.metrics import dice_dict
    module.eval()
    set_teacher_forcing(module, 0.0)
    module.test_metrics.to(a.device)
    for batch in loader(data, a, shuffle=False):
        with bench.autocast_for(torch.device(a.device), a.precision):
            module._step(to_device(batch, a.device), "test")
    out = dice_dict(module.test_metrics["dice"].compute())["dice_mean"]
    module.test_metrics.reset()
    return out


def measure(method: str, a, data: dict, steps: int) -> dict:
    torch.manual_seed(0)
    if a.device.startswith("cuda"):
        torch.cuda.empty_cache()
    bench.reset_peak_memory(a.device)
    cfg, module, optimizer = build_module(method, a.size, a.device, a.channels_last)
    if a.compile:
        module.model = torch.compile(module.model, fullgraph=True)
    clip = float(cfg.trainer.get("gradient_clip_val") or 0.0)
    r = {"model": type(getattr(module.model, "_orig_mod", module.model)).__name__,
         "params_m": bench.count_parameters(module.model) / 1e6}
    r.update(train(method, module, optimizer, data["train"], a, steps, clip))
    r["train_peak_mem_mb"] = bench.peak_memory_mb(a.device).get("gpu_peak_alloc_mb")
    r["test_dice_mean"] = test_dice(module, data["test"], a)
    images = torch.stack([data["test"][i]["image"] for i in range(min(a.batch, len(data["test"])))])
    bench.reset_peak_memory(a.device)
    model = module.model.eval()
    s = bench.time_inference(model, images, a.device, len(images), reps=10 if not a.tiny else 2,
                             warmup=3 if not a.tiny else 1, precision=a.precision, channels_last=a.channels_last)
    r.update(infer_s_per_view=s, infer_views_per_s=1.0 / s, infer_batch=len(images),
             infer_peak_mem_mb=bench.peak_memory_mb(a.device).get("gpu_peak_alloc_mb"))
    return r


def probe_steps(a, data, methods) -> tuple[int, dict]:
    """Steps that fit ``--budget-s`` for all methods, from a short probe of each (capped by --steps)."""
    probe = {}
    n = a.skip + 2 if a.tiny else max(a.skip + 5, 8)
    for m in methods:
        cfg, module, optimizer = build_module(m, a.size, a.device, a.channels_last)
        probe[m] = train(m, module, optimizer, data["train"], a, n, float(cfg.trainer.get("gradient_clip_val") or 0))["step_s_loader"]
        del module, optimizer
    fit = int(a.budget_s / sum(probe.values()))
    return max(a.skip + 2, min(a.steps, fit)), {"probe_steps": n, "step_s": probe}


def markdown(rep_: dict) -> str:
    res, a = rep_["methods"], rep_["settings"]
    smoke = rep_["device"] == "cpu"
    title = ("CPU SMOKE RUN of the GPU benchmark (tiny setting: checks the script, NOT a GPU figure)" if smoke
             else f"GPU benchmark on {rep_['machine'].get('gpu', 'a GPU')}: joint vs single-stage, same run")
    lines = [f"## {title}", "",
             f"{a['size'][0]}x{a['size'][1]}, batch {a['batch']}, {rep_['steps']} optimiser steps each, "
             f"{a['precision']}, channels_last {a['channels_last']}, compile {a['compile']}; data: "
             f"{rep_['data']['train_views']} training views rendered at {rep_['data']['render_views_per_s']:.0f} views/s, "
             f"{rep_['data']['test_views']} test views.", "",
             "| method | train views/s (loader) | train views/s (batch on device) | loader overhead | "
             "infer views/s | train peak MB | infer peak MB | test Dice | params |",
             "|---|---|---|---|---|---|---|---|---|"]
    for m, r in res.items():
        mem = [f"{r[k]:,.0f}" if r.get(k) is not None else "-" for k in ("train_peak_mem_mb", "infer_peak_mem_mb")]
        lines.append(f"| {m} | {r['train_views_per_s']:.1f} | {r['train_views_per_s_preloaded']:.1f} | "
                     f"{100 * r['loader_overhead']:+.0f} % | {r['infer_views_per_s']:.1f} | {mem[0]} | {mem[1]} | "
                     f"{r['test_dice_mean']:.3f} | {r['params_m']:.1f} M |")
    if {"joint", "single_stage"} <= set(res):
        j, s = res["joint"], res["single_stage"]
        lines += ["", f"Ratios joint / single-stage: training {j['train_views_per_s'] / s['train_views_per_s']:.2f}x "
                  f"(target >= 1.0x), inference {j['infer_views_per_s'] / s['infer_views_per_s']:.2f}x; "
                  f"joint inference {j['infer_views_per_s']:.0f} views/s (target >= 1,500)."]
    lines += ["", f"Machine: {rep_['machine']}. Versions: {rep_['versions']}.",
              f"Command: `{rep_['command']}` ({rep_['date']}, {rep_['total_wall_s']:.0f} s in all)."]
    return "\n".join(lines)


def write_docs(report: dict, docs: Path, json_path: Path | None = None) -> Path:
    out = Path(json_path or docs / "benchmarks" / f"gpu_bench_{report['name']}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str))
    rep.replace_section(docs / "benchmarks.md", report["name"], markdown(report), kind="gpu_bench")
    return out


def main(argv=None) -> dict:
    a = parse_args(argv)
    if a.from_json:
        report = json.loads(Path(a.from_json).read_text())
        out = write_docs(report, Path(a.docs))
        print(f"[gpu_bench] {a.from_json} -> {out} and the gpu_bench:{report['name']} section of {a.docs}/benchmarks.md")
        return report
    t_start = time.perf_counter()
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA GPU here; use --device cpu --tiny for the smoke run")
    if a.device == "cpu":
        torch.set_num_threads(min(2, os.cpu_count() or 1))
    torch.set_float32_matmul_precision("high")
    if a.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    methods = [m for m in a.methods.split(",") if m]
    data, data_info = make_data(a)
    print(f"[gpu_bench] data: {data_info}", flush=True)
    steps, calib = probe_steps(a, data, methods)
    print(f"[gpu_bench] {steps} steps per method ({calib})", flush=True)
    results = {}
    for m in methods:
        t0 = time.perf_counter()
        results[m] = measure(m, a, data, steps)
        print(f"[gpu_bench] {m}: {json.dumps(results[m])} ({time.perf_counter() - t0:.0f} s)", flush=True)
        if a.json:  # what is done survives a timeout
            Path(a.json).with_suffix(".partial.json").write_text(json.dumps(
                {"steps": steps, "data": data_info, "methods": results}, indent=1, default=str))
    report = {"name": a.name, "device": torch.device(a.device).type, "steps": steps, "calibration": calib,
              "settings": {"size": list(a.size), "batch": a.batch, "precision": a.precision,
                           "channels_last": a.channels_last, "compile": a.compile, "loader_workers": a.loader_workers},
              "data": data_info, "methods": results, "machine": bench.machine_info(), "versions": bench.versions(),
              "date": datetime.datetime.now().isoformat(timespec="seconds"),
              "command": "python benchmarks/gpu_bench.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    report["total_wall_s"] = time.perf_counter() - t_start
    docs = Path(a.docs)
    out = write_docs(report, docs, a.json)
    print(markdown(report))
    print(f"[gpu_bench] done in {report['total_wall_s']:.0f} s: {out}, {docs / 'benchmarks.md'}", flush=True)
    return report


if __name__ == "__main__":
    main()
