"""The optimizers named by string, as plain tensor updates.

``torch.optim``'s optimizers import ``torch._dynamo`` the first time one is
built in a process (their methods are wrapped to keep the compiler out),
which costs about one second: every worker of Surprise's ``n_jobs`` paid it
on its first fit, making ``cross_validate(..., n_jobs=2)`` slower than
``n_jobs=1`` on ML-100K. These classes apply the same updates as
``torch.optim.SGD``, ``RMSprop`` and ``Adam`` with their default settings, in
the same operation order, and import nothing. An optimizer class passed by
the user (any ``torch.optim.Optimizer``) is still used as given.

A group's ``lr`` may also be a tensor that broadcasts against its parameter
(one rate per row): stacked fits (:mod:`._stack`) each keep their own rate.
"""

from __future__ import annotations

import math

import torch

from ._memory import fresh_empty, fresh_zeros

__all__ = ["SGD", "RMSprop", "Adam"]


class _Plain:
    """Parameter groups ``[{"params": [tensor], "lr": float or tensor}, ...]`` updated from each tensor's ``.grad``."""

    def __init__(self, param_groups, lr):
        self.param_groups = [{"lr": lr, **group, "params": list(group["params"])} for group in param_groups]
        self.state = {}

    @torch.no_grad()
    def step(self):
        """Apply one update to every parameter that has a gradient."""
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    self._update(param, param.grad, group["lr"], self.state.setdefault(id(param), {}))

    def _update(self, param, grad, lr, state):
        raise NotImplementedError


class SGD(_Plain):
    """``torch.optim.SGD`` without momentum or weight decay: ``p -= lr g``."""

    def _update(self, param, grad, lr, state):
        if isinstance(lr, torch.Tensor):
            param.sub_(grad * lr)
        else:
            param.add_(grad, alpha=-lr)


class RMSprop(_Plain):
    """``torch.optim.RMSprop`` with its defaults (``alpha=0.99``, ``eps=1e-8``, not centred, no momentum)."""

    alpha, eps = 0.99, 1e-8

    def _update(self, param, grad, lr, state):
        if not state:
            state["square_avg"] = fresh_zeros(like=param)
        square_avg = state["square_avg"]
        square_avg.mul_(self.alpha).addcmul_(grad, grad, value=1 - self.alpha)
        _step(param, grad, square_avg.sqrt().add_(self.eps), lr)


class Adam(_Plain):
    """``torch.optim.Adam`` with its defaults (``betas=(0.9, 0.999)``, ``eps=1e-8``, no AMSGrad).

    A contiguous parameter with a float ``lr`` on the CPU or a CUDA device
    takes torch's fused kernel (the one ``torch.optim.Adam(fused=True)``
    runs): one pass over the parameter and its state instead of seven, 3.7x
    faster on a stacked search's factors. It computes the same update with
    different rounding.
    """

    beta1, beta2, eps = 0.9, 0.999, 1e-8

    def _update(self, param, grad, lr, state):
        if not state:
            state["step"] = 0
            state["exp_avg"] = fresh_zeros(like=param)
            state["exp_avg_sq"] = fresh_zeros(like=param)
        state["step"] += 1
        step, exp_avg, exp_avg_sq = state["step"], state["exp_avg"], state["exp_avg_sq"]
        if not isinstance(lr, torch.Tensor) and _fusable(param, grad):
            if "step_tensor" not in state:
                state["step_tensor"] = torch.zeros((), dtype=torch.float32, device=param.device)
            state["step_tensor"].fill_(step)
            torch._fused_adam_([param], [grad], [exp_avg], [exp_avg_sq], [], [state["step_tensor"]], lr=lr,
                               beta1=self.beta1, beta2=self.beta2, weight_decay=0.0, eps=self.eps, amsgrad=False,
                               maximize=False)
            return
        if "denom" not in state:
            # Kept from step to step: a fresh buffer of ML-10M's user factors faulted in new pages every step.
            state["denom"] = fresh_empty(like=exp_avg_sq)
        exp_avg.lerp_(grad, 1 - self.beta1)
        exp_avg_sq.mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)
        bias_correction1 = 1 - self.beta1 ** step
        bias_correction2 = 1 - self.beta2 ** step
        # torch.optim's (sqrt(v) / sqrt(bc2)) + eps: the same values.
        denom = torch.sqrt(exp_avg_sq, out=state["denom"]).div_(math.sqrt(bias_correction2)).add_(self.eps)
        _step(param, exp_avg, denom, lr / bias_correction1)


def _fusable(param, grad) -> bool:
    """Whether torch's fused Adam kernel can update ``param``: it assumes contiguous tensors."""
    return (hasattr(torch, "_fused_adam_") and param.device.type in ("cpu", "cuda")
            and param.dtype in (torch.float32, torch.float64) and param.is_contiguous() and grad.is_contiguous())


def _step(param, numerator, denominator, lr):
    """``param -= lr * numerator / denominator``, as torch.optim computes it for a float ``lr``.

    ``denominator`` is a scratch buffer: a tensor ``lr`` overwrites it with the step, in place,
    as fresh temporaries of a stacked search's factors made each step three times slower.
    """
    if isinstance(lr, torch.Tensor):
        param.sub_(torch.div(numerator, denominator, out=denominator).mul_(lr))
    else:
        param.addcdiv_(numerator, denominator, value=-lr)
