"""When the models check tensor VALUES (NaN, negative counts, box sizes).

A value check (``if not torch.isfinite(x).all(): raise ...``) needs the values on the host: on a
GPU it is a host-device synchronisation that stalls the launch queue, and under ``torch.compile``
it is a graph break. Shape and dtype checks cost nothing and always run. Value checks run:

* in eager mode on CPU tensors (free there: the default for tests, ``predict`` and CPU training);
* never while ``torch.compile`` traces the model (fullgraph needs it);
* on accelerators only when asked: ``BONEPATCH_VALUE_CHECKS=1`` in the environment or
  :func:`set_device_checks` ``(True)`` (off by default: no sync inside a forward on the GPU).

>>> enabled(torch.zeros(1))
True
"""
from __future__ import annotations

import os
from contextlib import nullcontext

import torch

_DEVICE_CHECKS = os.environ.get("BONEPATCH_VALUE_CHECKS", "0").lower() in ("1", "true", "yes")


def set_device_checks(on: bool) -> None:
    """Turn value checks on accelerator tensors on or off (process-wide)."""
    global _DEVICE_CHECKS
    _DEVICE_CHECKS = bool(on)


def enabled(x: torch.Tensor) -> bool:
    """True when a data-dependent check of ``x`` should run (see the module docstring)."""
    if torch.compiler.is_compiling():
        return False
    return x.device.type == "cpu" or _DEVICE_CHECKS


def stage(name: str):
    """``torch.profiler.record_function("bonepatch.<name>")`` for the per-stage profile
    (benchmarks/profile_step.py); a no-op context while compiling (dynamo ignores the range)."""
    if torch.compiler.is_compiling():
        return nullcontext()
    return torch.profiler.record_function(f"bonepatch.{name}")
