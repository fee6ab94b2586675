"""One generic forward / backward / gradcheck tester that every component goes through.

After smp ``tests/models/base.py`` and kornia's ``test_gradcheck``: a component is a callable
(module or function) plus example inputs; the tester checks finite outputs, finite gradients that
reach the inputs and parameters that should get them, and optionally a float64 gradcheck.
"""
from __future__ import annotations

from dataclasses import fields, is_dataclass

import torch


def tensors_of(out) -> list[torch.Tensor]:
    """Every floating tensor in an output (tensor, tuple / list, dict or dataclass)."""
    if isinstance(out, torch.Tensor):
        return [out] if out.is_floating_point() else []
    if is_dataclass(out):
        return tensors_of([getattr(out, f.name) for f in fields(out)])
    if isinstance(out, dict):
        return tensors_of(list(out.values()))
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in tensors_of(o)]
    return []


def check_component(fn, *inputs, grad_inputs=(), params=None, select=None, gradcheck: bool = False,
                    nonzero: bool = True, seed: int = 0):
    """Run ``fn(*inputs)``; check forward and backward; return the output.

    Args:
        fn: module or function.
        inputs: example inputs (tensors or anything else, passed as is).
        grad_inputs: indices of the inputs that must receive finite gradients.
        params: parameters (e.g. ``module.parameters()``) that must all get finite gradients and
            (with ``nonzero``) at least one of them a non-zero one; None skips the parameter check.
        select: picks the tensor(s) the loss is built from (default: every float output).
        gradcheck: also run ``torch.autograd.gradcheck`` in float64 w.r.t. ``grad_inputs``.
    """
    inputs = [x.detach().clone().requires_grad_(i in grad_inputs) if isinstance(x, torch.Tensor) and
              x.is_floating_point() else x for i, x in enumerate(inputs)]
    out = fn(*inputs)
    outs = tensors_of(select(out) if select else out)
    assert outs, "component returned no float tensor"
    for t in outs:
        assert torch.isfinite(t).all(), f"non-finite output of shape {tuple(t.shape)}"
    if grad_inputs or params is not None:
        g = torch.Generator().manual_seed(seed)
        loss = sum((t * torch.randn(t.shape, generator=g).to(t)).sum() for t in outs if t.requires_grad)
        assert isinstance(loss, torch.Tensor), "no output requires grad"
        loss.backward()
        for i in grad_inputs:
            assert inputs[i].grad is not None, f"input {i} got no gradient"
            assert torch.isfinite(inputs[i].grad).all(), f"input {i} got a non-finite gradient"
        if params is not None:
            params = [p for p in params if p.requires_grad]
            grads = [p.grad for p in params if p.grad is not None]
            assert grads, "no parameter got a gradient"
            assert all(torch.isfinite(gr).all() for gr in grads), "non-finite parameter gradient"
            assert not nonzero or any(gr.abs().sum() > 0 for gr in grads), "all parameter gradients are zero"
    if gradcheck:
        def f(*xs):
            args = list(inputs)
            for i, x in zip(grad_inputs, xs):
                args[i] = x
            res = tensors_of(select(fn(*args)) if select else fn(*args))
            return tuple(res)
        xs = tuple(inputs[i].detach().double().requires_grad_(True) for i in grad_inputs)
        assert torch.autograd.gradcheck(f, xs, eps=1e-6, atol=1e-4, rtol=1e-3, fast_mode=True)
    return out
