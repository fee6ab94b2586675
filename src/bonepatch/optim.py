"""Learning-rate schedules built from config (``_partial_: true``), total steps filled in by the module."""
from __future__ import annotations

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, SequentialLR


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int,
                  warmup_fraction: float = 0.05, final_factor: float = 0.01) -> SequentialLR:
    """Linear warm-up over ``warmup_fraction`` of the steps, then cosine decay to ``final_factor``.

    >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    >>> sched = warmup_cosine(opt, total_steps=100)
    >>> type(sched).__name__
    'SequentialLR'
    """
    total_steps = max(int(total_steps), 2)
    warm = max(1, int(warmup_fraction * total_steps))
    eta_min = [g["lr"] * final_factor for g in optimizer.param_groups]
    cosine = CosineAnnealingLR(optimizer, T_max=max(total_steps - warm, 1), eta_min=min(eta_min))
    return SequentialLR(optimizer, [LinearLR(optimizer, 0.01, 1.0, total_iters=warm), cosine],
                        milestones=[warm])
