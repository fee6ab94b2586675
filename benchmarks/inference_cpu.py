"""Inference time per 1024 x 256 view on the CPU: KeypointPatchSegmenter vs SingleStageSegmenter.

Each model runs in its own subprocess (fair peak RSS), from the default Hydra configs
(conf/model/*.yaml, preprocess=clahe, patches=default), in eval + inference_mode with
``torch.set_num_threads(threads)``, after warm-up; the median of ``--n`` runs is reported, plus a
per-stage profile of the pipeline.

The keypoint net is untrained (no weights can be downloaded), so its boxes are arbitrary (often
the whole canvas). By default the pipeline is therefore timed with the boxes of the anatomical
prior layout (``keypoints=`` the prior, teacher forcing: the keypoint net still runs in full);
``--boxes predicted`` times the untrained net's own boxes.

    python benchmarks/inference_cpu.py --n 15 --threads 2 --rounds 2     # both memory formats
    python benchmarks/inference_cpu.py --paired --n 40 --formats contiguous   # the ratio, paired

``--paired`` runs both models in ONE process, alternating view by view (pipeline, single-stage,
pipeline, ...), and reports each model's median and the median of the per-pair ratios: on shared
CPUs whose speed drifts, the ratio of neighbouring runs is far steadier than the ratio of two
medians taken minutes apart. (Peak RSS then covers both models; use the default mode for memory.)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"pipeline": "KeypointPatchSegmenter", "single_stage": "SingleStageSegmenter"}


def build(name: str):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    cfg = OmegaConf.create({"model": OmegaConf.load(ROOT / f"conf/model/{name}.yaml"),
                            "preprocess": OmegaConf.load(ROOT / "conf/preprocess/clahe.yaml"),
                            "patches": OmegaConf.load(ROOT / "conf/patches/default.yaml")})
    return instantiate(cfg.model).eval()


def prior_keypoints(image):
    """(1, K, 3) keypoints of the anatomical prior layout for ``image`` (realistic box sizes)."""
    import torch
    from bonepatch.geometry.boxes import DEFAULT_KEYPOINT_PRIOR
    h, w = image.shape[-2:]
    xy = DEFAULT_KEYPOINT_PRIOR[None] * torch.tensor([float(w), float(h)])
    return torch.cat([xy, torch.ones(1, xy.shape[1], 1)], -1)


def pipeline_stages(model, image, keypoints=None):
    """One pipeline forward with a timer per named stage (seconds)."""
    from bonepatch.geometry.crop_paste import crop_patches
    t, out = {}, {}

    def stage(name, fn):
        t0 = time.perf_counter()
        out[name] = fn()
        t[name] = time.perf_counter() - t0
        return out[name]

    x = stage("preprocess", lambda: model.preprocess(image))
    kp = stage("keypoint_net", lambda: model.keypoint_net(x))
    src = (kp.keypoints, kp.confidence) if keypoints is None else (keypoints[..., :2], keypoints[..., 2])
    boxes = stage("boxes", lambda: model.make_boxes(*src, x.shape[-2:]))
    patches = stage("crop", lambda: crop_patches(x, boxes, model.patch_size))
    region = model.regions(1, x.device)
    logits = stage("segmenter", lambda: model.segment(patches, region))
    stage("paste", lambda: model.paste(logits, boxes, region, x.shape[-2:]))
    return t


def worker(name: str, n: int, threads: int, channels_last: bool, boxes: str = "prior") -> dict:
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build(name)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    image = torch.rand(1, 1, 1024, 256, generator=torch.Generator().manual_seed(0)) * 500
    kp = prior_keypoints(image) if name == "pipeline" and boxes == "prior" else None
    times, stages = [], []
    with torch.inference_mode():
        for _ in range(3):  # warm-up
            out = model(image, kp)
        for _ in range(n):
            t0 = time.perf_counter()
            model(image, kp)
            times.append(time.perf_counter() - t0)
        if name == "pipeline":
            stages = [pipeline_stages(model, image, kp) for _ in range(n)]
    res = {"model": MODELS[name], "median_s": statistics.median(times), "min_s": min(times),
           "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "params_m": sum(p.numel() for p in model.parameters()) / 1e6}
    if stages:
        sizes = (out.boxes[0, :, 2] - out.boxes[0, :, 0]).round().int().tolist()
        res["box_sizes"] = " ".join(f"{w}x{h}" for w, h in sizes)
        res["stages_ms"] = {k: 1e3 * statistics.median(s[k] for s in stages) for k in stages[0]}
    return res


def paired(n: int, threads: int, channels_last: bool, boxes: str = "prior") -> dict:
    """Both models in this process, alternating per view; medians and the median per-pair ratio."""
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    models = {name: build(name) for name in MODELS}
    if channels_last:
        models = {k: m.to(memory_format=torch.channels_last) for k, m in models.items()}
    image = torch.rand(1, 1, 1024, 256, generator=torch.Generator().manual_seed(0)) * 500
    kp = prior_keypoints(image) if boxes == "prior" else None
    args = {"pipeline": (image, kp), "single_stage": (image, None)}
    times = {name: [] for name in MODELS}
    with torch.inference_mode():
        for name, m in models.items():  # warm-up
            for _ in range(3):
                m(*args[name])
        for i in range(n):
            order = list(MODELS) if i % 2 == 0 else list(MODELS)[::-1]  # ABBA: no order bias
            for name in order:
                t0 = time.perf_counter()
                models[name](*args[name])
                times[name].append(time.perf_counter() - t0)
        stages = [pipeline_stages(models["pipeline"], image, kp) for _ in range(max(5, n // 4))]
    ratios = [a / b for a, b in zip(times["pipeline"], times["single_stage"])]
    q = statistics.quantiles(ratios, n=4) if len(ratios) >= 4 else [min(ratios), 0, max(ratios)]
    return {"pipeline_median_s": statistics.median(times["pipeline"]),
            "single_stage_median_s": statistics.median(times["single_stage"]),
            "ratio_median": statistics.median(ratios), "ratio_q1": q[0], "ratio_q3": q[-1], "pairs": n,
            "stages_ms": {k: 1e3 * statistics.median(s[k] for s in stages) for k in stages[0]}}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20, help="timed runs per model (median reported)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds per model; the best median is kept")
    ap.add_argument("--formats", nargs="+", default=["contiguous", "channels_last"],
                    choices=["contiguous", "channels_last"])
    ap.add_argument("--boxes", default="prior", choices=["prior", "predicted"],
                    help="pipeline boxes: the prior layout (realistic sizes) or the untrained net's")
    ap.add_argument("--paired", action="store_true", help="both models in one process, alternating; per-pair ratio")
    ap.add_argument("--worker", choices=list(MODELS), help=argparse.SUPPRESS)
    ap.add_argument("--channels-last", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.n, args.threads, args.channels_last, args.boxes)))
        return
    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical), threads={args.threads}, n={args.n}, "
          f"pipeline boxes: {args.boxes}, load average before: {os.getloadavg()}")
    if args.paired:
        for fmt in args.formats:
            for _ in range(args.rounds):
                r = paired(args.n, args.threads, fmt == "channels_last", args.boxes)
                print(f"[{fmt}, paired] pipeline median {r['pipeline_median_s']:.3f} s/view, single-stage "
                      f"{r['single_stage_median_s']:.3f} s/view; ratio median {r['ratio_median']:.3f}x "
                      f"(quartiles {r['ratio_q1']:.3f}-{r['ratio_q3']:.3f}, {r['pairs']} pairs); load {os.getloadavg()[0]:.2f}")
                print("  pipeline stages (ms, median): " + ", ".join(f"{k} {v:.1f}" for k, v in r["stages_ms"].items()))
        print(f"\nload average after: {os.getloadavg()}")
        return
    for fmt in args.formats:
        results = {}
        for _ in range(args.rounds):  # alternate the models; keep each one's best median (shared CPUs)
            for name in MODELS:  # each model in its own process, for a fair peak RSS
                cmd = [sys.executable, __file__, "--worker", name, "--n", str(args.n), "--threads",
                       str(args.threads), "--boxes", args.boxes] + (["--channels-last"] if fmt == "channels_last" else [])
                proc = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                if name not in results or r["median_s"] < results[name]["median_s"]:
                    results[name] = r
        ratio = results["pipeline"]["median_s"] / results["single_stage"]["median_s"]
        print(f"\n[{fmt}]")
        for name, r in results.items():
            print(f"  {r['model']:24s} median {r['median_s']:.3f} s/view (min {r['min_s']:.3f}), "
                  f"peak RSS {r['peak_rss_mib']:.0f} MiB, {r['params_m']:.1f} M params")
        print(f"  pipeline / single-stage time: {ratio:.2f}x")
        print(f"  pipeline boxes (w x h px): {results['pipeline']['box_sizes']}")
        print("  pipeline stages (ms, median): " + ", ".join(
            f"{k} {v:.1f}" for k, v in results["pipeline"]["stages_ms"].items()))
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
