"""Where the time of one training step goes: torch.profiler, per stage, forward and backward.

The models and the Lightning module mark their stages with ``bonepatch.<stage>`` profiler
ranges (``bonepatch.value_checks.stage``): preprocess (normalise + CLAHE), keypoint_net, boxes,
crop, segmenter, paste, loss.keypoint / loss.patch / loss.full, metrics (validation step). The
backward time of every autograd node is charged to the stage whose forward op created it (the
profiler's sequence numbers), so each stage gets a forward and a backward figure. Data loading
is timed outside the profiler: a DataLoader (``num_workers=0``, the main process's cost) over
the phantom rendered on the fly and over an in-memory cache (``data=phantom_cached``).

    python benchmarks/profile_step.py                                    # CPU, joint, 1024x256, batch 2
    python benchmarks/profile_step.py --experiment single_stage
    python benchmarks/profile_step.py --size 512 128 --batch 4           # the compare.py cpu profile
    python benchmarks/profile_step.py --device cuda --batch 64 --precision bf16-mixed --channels-last

Prints a table and writes JSON (``--json``, default outputs/profile_<experiment>_<device>.json).
"""
from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile, record_function  # noqa: E402

import bench_utils as bench  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "bonepatch."
FORWARD_STAGES = ("preprocess", "keypoint_net", "boxes", "crop", "segmenter", "paste",
                  "loss.keypoint", "loss.patch", "loss.full")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--experiment", default="joint", help="conf/experiment name (joint, single_stage, fixed_patch)")
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    p.add_argument("--size", type=int, nargs=2, default=(1024, 256), metavar=("H", "W"))
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--steps", type=int, default=3, help="profiled training steps")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--val-steps", type=int, default=1, help="profiled validation steps (metrics)")
    p.add_argument("--load-batches", type=int, default=3, help="batches timed through each DataLoader")
    p.add_argument("--threads", type=int, default=2, help="torch threads on the CPU (0 = torch's default)")
    p.add_argument("--precision", default="32-true", help="32-true | bf16-mixed (autocast like Lightning)")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--boxes", default="true", choices=["true", "predicted"],
                   help="training boxes from the (jittered) true keypoints (teacher forcing, realistic "
                        "box sizes for an untrained net) or from the predicted ones (gradient into the keypoint net)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="Hydra override, repeatable")
    p.add_argument("--json", default=None, help="output JSON path")
    return p.parse_args(argv)


def build_module(experiment: str, size, device: str = "cpu", channels_last: bool = False, overrides=()):
    """Config, Lightning module (no Trainer: ``log`` is a no-op) and optimiser of ``experiment``
    from conf/, scaled to ``size`` (H, W) like compare.py's profiles (defaults are for 1024 x 256)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate
    from omegaconf import open_dict
    h, w = size
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        out = ROOT / "outputs" / "profile_step"
        cfg = compose("train", overrides=[f"experiment={experiment}", "~logger", f"paths.output_dir={out}",
                                          f"paths.log_dir={out / 'logs'}", *overrides])
    with open_dict(cfg):
        cfg.module.metrics_path = None
        s = h / 1024
        if "keypoint_net" in cfg.model and s != 1:
            cfg.model.keypoint_net.input_size = [h // 2, w // 2]
            cfg.model.min_size = max(4.0, 32.0 * s)
        if "patch_size" in cfg.model and s != 1:
            side = max(32, int(round(192 * s / 32)) * 32)
            cfg.model.patch_size = [side, side]
    model = instantiate(cfg.model)
    module = instantiate(cfg.module, _partial_=True)(model=model)
    module.log = lambda *a, **k: None  # no Trainer: nothing to log to
    module.scheduler_factory = None
    optimizer = module.configure_optimizers()
    module.to(torch.device(device))
    if channels_last:
        module.to(memory_format=torch.channels_last)
    return cfg, module, optimizer


def set_teacher_forcing(module, p: float) -> None:
    """Boxes from the true keypoints with probability ``p`` (the module reads its schedule from a
    Trainer's global step; without one it is held constant)."""
    module.teacher_forcing = {"start": float(p), "end": float(p), "steps": 0}


def build(args):
    cfg, module, optimizer = build_module(args.experiment, args.size, args.device, args.channels_last, args.set)
    set_teacher_forcing(module, 1.0 if args.boxes == "true" else 0.0)
    return cfg, module, optimizer


def phantom(args, length: int):
    from bonepatch.data.dataset import PhantomDataset
    return PhantomDataset(0, length, config={"height": args.size[0], "width": args.size[1], "view": "both",
                                             "rib_label": "region"})


def time_loader(dataset, batch: int, n: int) -> float:
    """Median seconds per batch of a main-process DataLoader (collate included)."""
    from torch.utils.data import DataLoader
    from bonepatch.data.datamodule import collate
    it = iter(DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=0, collate_fn=collate))
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        next(it)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def to_device(batch: dict, device) -> dict:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


def train_step(module, optimizer, batch, args, clip: float):
    with record_function(PREFIX + "step"):
        with record_function(PREFIX + "to_device"):
            batch = to_device(batch, args.device)
        with bench.autocast_for(torch.device(args.device), args.precision):
            loss = module._step(batch, "train")
        with record_function(PREFIX + "backward"):
            loss.backward()
        with record_function(PREFIX + "optimizer"):
            if clip:
                torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)


def val_step(module, batch, args):
    with record_function(PREFIX + "val_step"), torch.no_grad():
        with bench.autocast_for(torch.device(args.device), args.precision):
            module._step(to_device(batch, args.device), "val")


def _stage_of(event):
    """Innermost bonepatch stage range enclosing ``event`` (None outside any)."""
    e = event.cpu_parent
    while e is not None:
        if e.name.startswith(PREFIX) and e.name not in (PREFIX + "step", PREFIX + "val_step"):
            return e.name[len(PREFIX):]
        e = e.cpu_parent
    return None


def attribute(events, device_type: str) -> dict:
    """Per stage: forward / backward milliseconds (CPU wall, and device time on CUDA), summed."""
    dev = device_type == "cuda"
    t = defaultdict(lambda: defaultdict(float))
    owner = {}  # (forward thread, sequence nr) -> stage
    for e in events:
        if e.name.startswith(PREFIX):
            t[e.name[len(PREFIX):]]["forward_ms"] += e.cpu_time_total / 1e3
            if dev:
                t[e.name[len(PREFIX):]]["forward_device_ms"] += e.device_time_total / 1e3
        elif e.sequence_nr >= 0 and not e.name.startswith("autograd::engine"):
            key = (e.thread, e.sequence_nr)
            if key not in owner:
                owner[key] = _stage_of(e) or "other"
    for e in events:
        if e.name.startswith("autograd::engine::evaluate_function"):
            stage = owner.get((e.fwd_thread, e.sequence_nr), "grad_accumulate" if e.sequence_nr < 0 else "other")
            t[stage]["backward_ms"] += e.cpu_time_total / 1e3
            if dev:
                t[stage]["backward_device_ms"] += e.device_time_total / 1e3
    return {k: dict(v) for k, v in t.items()}


def per_step(stages: dict, steps: int) -> dict:
    """Totals over ``steps`` steps -> per step."""
    return {k: {c: v / steps for c, v in d.items()} for k, d in stages.items()}


def table(per: dict, step_ms: float, data: dict, dev: bool) -> str:
    fwd_total = sum(per.get(s, {}).get("forward_ms", 0.0) for s in FORWARD_STAGES)
    step_fwd = per.get("step", {}).get("forward_ms", 0.0)
    rows = [(s, per.get(s, {})) for s in FORWARD_STAGES if s in per]
    other_fwd = step_fwd - fwd_total - sum(per.get(s, {}).get("forward_ms", 0.0)
                                           for s in ("to_device", "backward", "optimizer"))
    rows.append(("other (module glue, teacher forcing)", {"forward_ms": other_fwd,
                                                           "backward_ms": per.get("other", {}).get("backward_ms", 0.0)}))
    rows.append(("grad accumulate", {"backward_ms": per.get("grad_accumulate", {}).get("backward_ms", 0.0)}))
    rows.append(("optimizer (clip + AdamW + zero_grad)", {"forward_ms": per.get("optimizer", {}).get("forward_ms", 0.0)}))
    rows.append(("host -> device copy", {"forward_ms": per.get("to_device", {}).get("forward_ms", 0.0)}))
    bwd_in_stages = sum(r.get("backward_ms", 0.0) for _, r in rows)
    engine = per.get("backward", {}).get("forward_ms", 0.0) - bwd_in_stages
    rows.append(("backward engine overhead", {"backward_ms": max(engine, 0.0)}))
    head = "| stage | forward ms | backward ms | total ms | share of step |"
    if dev:
        head = head[:-1] + " device fwd ms | device bwd ms |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, r in rows:
        f, b = r.get("forward_ms", 0.0), r.get("backward_ms", 0.0)
        line = f"| {name} | {f:.1f} | {b:.1f} | {f + b:.1f} | {100 * (f + b) / step_ms:.1f} % |"
        if dev:
            line += f" {r.get('forward_device_ms', 0.0):.1f} | {r.get('backward_device_ms', 0.0):.1f} |"
        lines.append(line)
    lines.append(f"| **training step (profiled)** | | | **{step_ms:.1f}** | 100 % |")
    if "metrics" in per:
        lines.append(f"| metrics (validation step: Dice + keypoint update) | {per['metrics'].get('forward_ms', 0.0):.1f} | | | |")
    for k, v in data.items():
        lines.append(f"| data: {k} (per batch, main process) | {1e3 * v:.1f} | | | |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads and args.device == "cpu":
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    torch.set_float32_matmul_precision("high")
    cfg, module, optimizer = build(args)
    module.train()
    clip = float(cfg.trainer.get("gradient_clip_val") or 0.0)
    n_views = args.batch * max(args.load_batches, 2)
    data = {"phantom on the fly": time_loader(phantom(args, n_views), args.batch, args.load_batches)}
    from bonepatch.data.cache import CachedDataset
    cached = CachedDataset(phantom(args, n_views), workers=0)
    data["cached phantom"] = time_loader(cached, args.batch, args.load_batches)
    batches = [cached[i] for i in range(args.batch)]
    from bonepatch.data.datamodule import collate
    batch = collate(batches)
    for _ in range(args.warmup):
        train_step(module, optimizer, batch, args, clip)
    bench._sync(args.device)
    t0 = time.perf_counter()  # unprofiled steps: the profiler's own overhead is not in this figure
    for _ in range(args.steps):
        train_step(module, optimizer, batch, args, clip)
    bench._sync(args.device)
    plain_ms = 1e3 * (time.perf_counter() - t0) / args.steps
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device.startswith("cuda") else [])
    with profile(activities=activities) as prof:
        for _ in range(args.steps):
            train_step(module, optimizer, batch, args, clip)
        bench._sync(args.device)
    per = per_step(attribute(prof.events(), torch.device(args.device).type), args.steps)
    if args.val_steps:  # a separate session: the validation forward's stages stay out of the training figures
        module.eval()
        with profile(activities=activities) as vprof:
            for _ in range(args.val_steps):
                val_step(module, batch, args)
            bench._sync(args.device)
        module.train()
        val = per_step(attribute(vprof.events(), torch.device(args.device).type), args.val_steps)
        per["metrics"] = val.get("metrics", {})
        per["val_step"] = val.get("val_step", {})
    step_ms = per["step"]["forward_ms"]
    dev = args.device.startswith("cuda")
    text = table(per, step_ms, data, dev)
    report = {
        "experiment": args.experiment, "model": type(module.model).__name__, "device": args.device,
        "size": list(args.size), "batch": args.batch, "precision": args.precision,
        "channels_last": args.channels_last, "boxes": args.boxes, "steps": args.steps,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": "python benchmarks/profile_step.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": bench.machine_info(), "versions": bench.versions(),
        "step_ms_profiled": step_ms, "step_ms_unprofiled": plain_ms,
        "train_views_per_s_unprofiled": 1e3 * args.batch / plain_ms,
        "stages_ms_per_step": per, "stage_note": "forward_ms of step/backward/optimizer/to_device are "
        "those ranges' wall times; metrics and val_step are per validation step (profiled separately)",
        "data_s_per_batch": data, "table_markdown": text,
    }
    if dev:
        report["gpu_peak_alloc_mb"] = torch.cuda.max_memory_allocated() / 2**20
    out = Path(args.json or ROOT / "outputs" / f"profile_{args.experiment}_{torch.device(args.device).type}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"{report['model']} ({args.experiment}), {args.device}, {args.size[0]}x{args.size[1]}, batch {args.batch}, "
          f"{args.precision}{', channels_last' if args.channels_last else ''}, boxes from {args.boxes} keypoints")
    print(text)
    print(f"step {plain_ms:.1f} ms unprofiled ({report['train_views_per_s_unprofiled']:.2f} views/s), "
          f"{step_ms:.1f} ms profiled; JSON: {out}")
    return report


if __name__ == "__main__":
    main()
