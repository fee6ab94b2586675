"""Measuring helpers for benchmarks: step timing, inference timing, peak memory, machine facts.

Used by ``benchmarks/compare.py``; each function is independent of the methods compared.
"""
from __future__ import annotations

import copy
import importlib.metadata
import platform
import resource
import shutil
import statistics
import subprocess
import threading
import time
from contextlib import nullcontext
from pathlib import Path

import lightning as L
import torch


def _sync(device: torch.device | str | None) -> None:
    if torch.device(device or "cpu").type == "cuda":
        torch.cuda.synchronize()


class StepTimer(L.Callback):
    """Wall-clock time of steady-state training steps (the first ``skip`` steps of every
    ``fit`` and the step right after a validation run are left out).

    ``interval``: batch end to next batch end (data loading + transfer + step), ``compute``:
    batch start to batch end (the step alone). One instance may serve several fits (stages).
    """

    def __init__(self, skip: int = 5, gpu_util: bool = False):
        self.skip, self.gpu_util = int(skip), gpu_util
        self.intervals: list[float] = []
        self.compute: list[float] = []
        self.views: list[int] = []
        self.util = GpuUtilSampler() if gpu_util else None

    def on_train_start(self, trainer, pl_module):
        self._seen, self._last, self._start = 0, None, None
        if self.util is not None:
            self.util.start()

    def on_train_end(self, trainer, pl_module):
        if self.util is not None:
            self.util.stop()

    def on_validation_start(self, trainer, pl_module):
        self._last = None  # the next interval would contain the validation

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        _sync(pl_module.device)
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        _sync(pl_module.device)
        now = time.perf_counter()
        self._seen += 1
        if self._seen > self.skip:
            if self._last is not None:
                self.intervals.append(now - self._last)
                self.views.append(int(batch["image"].shape[0]))
            if self._start is not None:
                self.compute.append(now - self._start)
        self._last = now

    def summary(self) -> dict:
        """views/s through the loader and per step (median-based, robust to hiccups)."""
        if not self.intervals:
            return {"timed_steps": 0, "train_views_per_s": float("nan"),
                    "step_s": float("nan"), "step_compute_s": float("nan")}
        batch = statistics.median(self.views)
        step = statistics.median(self.intervals)
        out = {"timed_steps": len(self.intervals), "step_s": step,
               "step_compute_s": statistics.median(self.compute),
               "train_views_per_s": batch / step,
               "train_views_per_s_mean": sum(self.views) / sum(self.intervals)}
        if self.util is not None:
            out["gpu_util_percent"] = self.util.mean()
        return out


class GpuUtilSampler:
    """Mean GPU utilisation (%) sampled every ``period`` s by pynvml, else nvidia-smi; nan if neither."""

    def __init__(self, period: float = 0.25):
        self.period, self.samples, self._stop, self._thread = period, [], threading.Event(), None

    def _read(self):
        try:
            import pynvml
            if not getattr(self, "_nvml", False):
                pynvml.nvmlInit()
                self._nvml = True
            handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
            return float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        except Exception:  # noqa: BLE001 - any failure: try the command line tool
            if shutil.which("nvidia-smi") is None:
                return None
            out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=5).stdout.split()
            return float(out[0]) if out else None

    def _loop(self):
        while not self._stop.wait(self.period):
            value = self._read()
            if value is None:
                return
            self.samples.append(value)

    def start(self):
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def mean(self) -> float:
        return sum(self.samples) / len(self.samples) if self.samples else float("nan")


class RepeatBatch:
    """An iterable yielding the same (already on-device) batch ``n`` times: training steps
    without data loading, to compare with the same steps through the DataLoader."""

    def __init__(self, batch: dict, n: int):
        self.batch, self.n = batch, int(n)

    def __iter__(self):
        return (self.batch for _ in range(self.n))

    def __len__(self) -> int:
        return self.n


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def autocast_for(device: torch.device, precision: str):
    """The autocast context matching a Lightning precision string on ``device``."""
    if "bf16" in str(precision):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if "16" in str(precision) and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return nullcontext()


@torch.inference_mode()
def time_inference(model: torch.nn.Module, images: torch.Tensor, device: str | torch.device,
                   batch_size: int = 1, reps: int = 5, warmup: int = 2, threads: int | None = None,
                   precision: str = "32-true", channels_last: bool = False) -> float:
    """Median seconds per view of ``model(images[:batch_size])`` in eval mode on ``device``.

    ``model`` is deep-copied (the caller's module keeps its device and mode); ``threads`` sets
    ``torch.set_num_threads`` for the duration (CPU timing).
    """
    device = torch.device(device)
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        net = copy.deepcopy(model).to(device).eval()
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        reps_needed = -(-batch_size // images.shape[0])
        x = images.repeat(reps_needed, 1, 1, 1)[:batch_size].to(device)
        times = []
        with autocast_for(device, precision):
            for i in range(warmup + reps):
                _sync(device)
                t0 = time.perf_counter()
                net(x)
                _sync(device)
                if i >= warmup:
                    times.append(time.perf_counter() - t0)
        del net
        return statistics.median(times) / batch_size
    finally:
        torch.set_num_threads(old_threads)


# ---- memory ------------------------------------------------------------------------------------
def reset_peak_memory(device: torch.device | str | None = None) -> None:
    """Reset the process' peak RSS (Linux ``clear_refs`` 5 -> VmHWM) and CUDA's peak counter."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_memory_mb(device: torch.device | str | None = None) -> dict:
    """``cpu_peak_rss_mb`` since the last reset (VmHWM; else ``resource`` ru_maxrss, which is the
    peak since process start) and ``gpu_peak_alloc_mb`` on CUDA."""
    out = {"cpu_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "cpu_peak_rss_source": "resource.ru_maxrss"}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                out.update(cpu_peak_rss_mb=int(line.split()[1]) / 1024, cpu_peak_rss_source="VmHWM")
    except OSError:
        pass
    if device is not None and torch.device(device).type == "cuda":
        out["gpu_peak_alloc_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


# ---- machine -----------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
        for line in text.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    import os
    info = {"cpu": cpu_model(), "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(), "python": platform.python_version()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def versions(names=("torch", "lightning", "segmentation-models-pytorch", "timm", "kornia",
                    "torchmetrics", "hydra-core")) -> dict:
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "n/a"
    return out
