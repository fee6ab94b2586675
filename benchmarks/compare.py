"""Reproduce the paper's comparison on the phantom: keypoint-guided patches vs baselines.

Trains ``joint``, ``staged``, ``single_stage`` and ``fixed_patch`` (conf/experiment) on the same
phantom splits (rendered once, shared) with the same budget, tests each on a fixed test set
never used in training or model selection, and measures accuracy, speed and memory.

    python benchmarks/compare.py --profile cpu                 # 512x128, 2 CPU threads (<= 20 min)
    python benchmarks/compare.py --profile gpu                 # 1024x256, bf16, one GPU (<= 8 min)
    python benchmarks/compare.py --profile cpu --seeds 0,1,2 --name cpu_v2_3seeds   # mean +- sd, ~1 h
    python benchmarks/compare.py --tiny --methods joint,single_stage --out-dir /tmp/c --docs /tmp/d

Writes ``<docs>/benchmarks/compare_<profile>.json|csv``, ``<docs>/img/compare_<profile>_dice.png``
and ``_overlays.png``, and the ``compare:<profile>`` section of ``<docs>/benchmarks.md``.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import logging
import shlex
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

import compare_lib as lib  # noqa: E402
import compare_report as rep  # noqa: E402
import bench_utils as bench  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--profile", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--tiny", action="store_true", help="seconds-long run for tests (profile name 'tiny')")
    p.add_argument("--methods", default=",".join(lib.METHODS), help="comma-separated subset of " + ",".join(lib.METHODS))
    p.add_argument("--steps", default=None, help="optimiser steps per method, or 'auto' (calibrate to --train-seconds)")
    p.add_argument("--train-seconds", type=float, default=None,
                   help="with --steps auto: all methods' training time (gpu profile: 240 s)")
    p.add_argument("--batch", type=int, default=None, help="batch size (default: the profile's)")
    p.add_argument("--train-views", type=int, default=None, help="size of the rendered training set")
    p.add_argument("--test-views", type=int, default=None, help="test set size (keep >= 200 for reported runs)")
    p.add_argument("--render-workers", type=int, default=0, help="processes rendering the phantom (0 = all cores)")
    p.add_argument("--no-channels-last", action="store_true", help="keep NCHW on the GPU")
    p.add_argument("--out-dir", default=None, help="run folders/checkpoints (default outputs/compare_<profile>)")
    p.add_argument("--docs", default=str(lib.ROOT / "docs"), help="docs folder receiving the results")
    p.add_argument("--name", default=None,
                   help="name of this run's files and benchmarks.md section (default: the profile), "
                        "e.g. cpu_steps720 for a longer budget next to the standard cpu run")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config value (YAML) for every method whose config has KEY, applied after the profile; "
                        "'++KEY=VALUE' adds a missing key. E.g. --set model.margin=0.25 "
                        "--set '++patches[0].margin={bottom: 0.3}'; repeatable")
    p.add_argument("--overlay-view", type=int, default=0, help="test view index shown for every method")
    p.add_argument("--seeds", default=None,
                   help="comma-separated training seeds, e.g. 0,1,2: every method is trained once per seed "
                        "(weight init, batch order, augmentation; the phantom splits stay the same) and "
                        "reported as mean +- sd over seeds (default: the config's seed, one run)")
    return p.parse_args(argv)


def parse_seeds(text: str | None) -> list[int | None]:
    """'0,1,2' -> [0, 1, 2]; None -> [None] (the config's own seed)."""
    if text is None:
        return [None]
    try:
        seeds = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"--seeds {text!r}: expected comma-separated integers, e.g. --seeds 0,1,2") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise SystemExit(f"--seeds {text!r}: give at least one seed, each once")
    return seeds


def measure_method(method: str, prof: dict, steps: int, dm, out_dir: Path, device: str, view: int) -> tuple[dict, dict]:
    """Train + test one method; accuracy, speed and memory figures and its overlay view."""
    bench.reset_peak_memory(device)
    cfg = lib.compose_method(method, prof, steps, out_dir)
    timer = bench.StepTimer(skip=1 if steps < 20 else 5, gpu_util=device == "cuda")
    module, trainer, info = lib.train_method(cfg, dm, timer, channels_last=prof["channels_last"])
    r = {"experiment": method, "seed": int(cfg.seed), "model": type(module.model).__name__,
         "params": bench.count_parameters(module.model),
         "overrides": list(cfg.get("applied_overrides") or []),
         "steps": steps, "batch": prof["batch"], **info, **timer.summary()}
    r.update(json.loads(Path(cfg.module.metrics_path).read_text()))
    r.pop("classes", None)
    r.update(bench.peak_memory_mb(module.device))  # peak of train + test, before the timing below
    precision = str(cfg.trainer.precision)
    shown = lib.predict_view(module, dm.datasets["test"], view, precision)
    test = dm.datasets["test"]
    images = torch.stack([test[i]["image"] for i in range(min(prof["infer_batch"], len(test)))])
    kw = dict(reps=prof["infer_reps"], warmup=1 if prof["infer_reps"] < 3 else 2)
    dev_kw = dict(precision=precision, channels_last=prof["channels_last"], threads=prof["threads"], **kw)
    r["infer_device_b1_s"] = bench.time_inference(module.model, images[:1], module.device, 1, **dev_kw)
    r["infer_device_batched_s"] = bench.time_inference(module.model, images, module.device, len(images), **dev_kw)
    r["infer_batch"] = len(images)
    if device == "cpu":
        r["infer_cpu2_b1_s"] = r["infer_device_b1_s"]
    else:  # the 2-core CPU figure at this profile's resolution, fp32
        r["infer_cpu2_b1_s"] = bench.time_inference(module.model, images[:1], "cpu", 1, reps=3, warmup=1, threads=2)
        if prof["step_check"]:
            r.update(lib.gpu_step_check(module, cfg, dm, prof["step_check"]))
    del module, trainer
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    return r, shown


def main(argv=None) -> dict:
    args = parse_args(argv)
    t_start = time.perf_counter()
    profile = "tiny" if args.tiny else args.profile
    name = args.name or profile
    if not name.replace("_", "").replace("-", "").isalnum():
        raise SystemExit(f"--name {name!r}: use letters, digits, '_' and '-' only (it names files)")
    prof = dict(lib.PROFILES[profile])
    if args.no_channels_last:
        prof["channels_last"] = False
    if args.batch:
        prof["batch"] = args.batch
    if args.train_views:
        prof["train_len"] = args.train_views
    if args.test_views:
        prof["test_len"] = args.test_views
    bad = [s for s in args.set if "=" not in s]
    if bad:
        raise SystemExit(f"--set {bad[0]!r}: expected KEY=VALUE, e.g. --set model.margin=0.25")
    prof["overrides"] = list(args.set)
    for item in args.set:
        try:
            fits = any(lib.apply_overrides(lib.compose_method(m, {**prof, "overrides": ()}, 1, Path("/tmp")), [item])
                       for m in lib.METHODS)
        except ValueError as err:
            raise SystemExit(str(err)) from None
        if not fits:
            raise SystemExit(f"--set {item!r}: no method's config has {item.split('=')[0]!r}; "
                             "check the key (python train.py --cfg job experiment=joint) or add it with '++'")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = set(methods) - set(lib.METHODS)
    if unknown:
        raise SystemExit(f"--methods: unknown {sorted(unknown)}; choose from {','.join(lib.METHODS)}")
    device = "cuda" if prof["trainer"] == "gpu" else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--profile gpu needs a CUDA GPU; use --profile cpu here")
    if prof["threads"] and device == "cpu":
        torch.set_num_threads(prof["threads"])
    out_dir = Path(args.out_dir or lib.ROOT / "outputs" / f"compare_{name}")
    docs = Path(args.docs)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")

    dm, data_info = lib.make_data(prof, args.render_workers)
    steps, calib = args.steps or prof["steps"], None
    if str(steps) == "auto":
        steps, calib = lib.calibrate_steps(methods, prof, dm, out_dir,
                                           args.train_seconds or prof.get("train_seconds", 300.0))
    steps = int(steps)
    print(f"[compare] {profile}: {methods}, {steps} steps x batch {prof['batch']}", flush=True)
    seeds = parse_seeds(args.seeds)
    runs, views = {m: [] for m in methods}, {}
    for seed in seeds:  # seed-major: a run cut short still holds whole comparisons
        for m in methods:
            t0 = time.perf_counter()
            run_dir = out_dir if seed is None else out_dir / f"seed{seed}"
            r, shown = measure_method(m, {**prof, "seed": seed}, steps, dm, run_dir, device, args.overlay_view)
            runs[m].append(r)
            views.setdefault(m, shown)  # the first seed's overlay
            out_dir.mkdir(parents=True, exist_ok=True)  # survives a run cut short
            (out_dir / "partial.json").write_text(json.dumps({"steps": steps, "data": data_info, "seeds": seeds,
                                                             "runs": runs}, indent=1, allow_nan=True, default=str))
            print(f"[compare] {m} seed {r['seed']}: Dice {r['dice_mean']:.4f}, {r['train_views_per_s']:.1f} "
                  f"views/s, {time.perf_counter() - t0:.0f} s", flush=True)
    results = {m: rep.over_seeds(rs) for m, rs in runs.items()}
    cfg0 = lib.compose_method(methods[0], prof, steps, out_dir)
    report = {
        "profile": profile, "name": name, "device": device, "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(sys.argv[1:] if argv is None else argv)]),
        "machine": bench.machine_info(), "versions": bench.versions(), "cpu_threads": torch.get_num_threads(),
        "data": data_info, "seeds": [int(cfg0.seed)] if seeds == [None] else seeds,
        "budget": {"steps": steps, "batch": prof["batch"], "lr": prof["lr"], "encoder": cfg0.model.segmenter.encoder,
                   "augment": OmegaConf.to_container(cfg0.module.augment, resolve=True)
                   if cfg0.module.augment is not None else None, "precision": str(cfg0.trainer.precision),
                   "channels_last": prof["channels_last"], "keypoint_input": prof["kp_input"], "patch": prof["patch"],
                   "teacher_forcing_fraction": lib.TEACHER_FORCING_FRACTION, "calibration": calib,
                   "overrides": list(args.set)},
        "methods": results,
    }
    report["targets"] = rep.targets(results, profile, device == "cuda")
    report["total_wall_s"] = time.perf_counter() - t_start
    rep.write_tables(report, docs / "benchmarks" / f"compare_{name}.json", docs / "benchmarks" / f"compare_{name}.csv")
    rep.dice_chart(results, docs / "img" / f"compare_{name}_dice.png", f"Test-set Dice per class ({name})")
    rep.overlay_montage(views, results, docs / "img" / f"compare_{name}_overlays.png", args.overlay_view)
    rep.replace_section(docs / "benchmarks.md", name, rep.markdown(report, name))
    for t in report["targets"]:
        print(f"[compare] target {t['target']}: {t['value']} -> {t['status']}", flush=True)
    print(f"[compare] done in {report['total_wall_s']:.0f} s; results in {docs}", flush=True)
    return report


if __name__ == "__main__":
    main()
