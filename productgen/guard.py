"""A guard on an optimizer's updates: a gradient far above the run's own scale is clipped to it.

One update can throw a VAE off for good. Measured: a `cpu-demo` cVAE at batch 128 ran steadily
(gradient norm 700-2,300) until step 1,326 (3,553), then 27,477 and 80,978 over the next four
steps; the code's KL went from 45 to 10,220 nats, the prior never recovered and the renders were
blocks of colour. Adam's short memory (beta1 0.5) turns one such gradient into a step many times
the learning rate. VDVAE (Child 2021) skips updates whose norm passes a fixed threshold; the
threshold here is in units of the run's own gradient norm (its running average), so it needs no
tuning for a loss's scale, a batch size or a dataset.

Everything stays on the device (no sync per step) and in the checkpoint, so a resumed run guards
exactly as an uninterrupted one.
"""

from __future__ import annotations

import math

import torch

__all__ = ["GradientGuard", "check_ratio"]


def check_ratio(ratio: float) -> float:
    """RATIO as a guard takes it; anything not above 1 would clip ordinary updates (ValueError)."""
    if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not ratio > 1:
        raise ValueError(f"grad_clip must be above 1 (times the running average) or 0 for off, got {ratio!r}")
    return float(ratio)


class GradientGuard:
    """Before each step of OPTIMIZER: a gradient whose norm is over RATIO times the running
    average of the norms let through is scaled down to that; one that is not finite is zeroed
    (Adam then only coasts on its momentum). Nothing is clipped in the first WARMUP updates."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, ratio: float, decay: float = 0.99, warmup: int = 100
    ) -> None:
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.ratio, self.decay = check_ratio(ratio), decay
        self.warmup = max(warmup, 1)  # the first update has no average to be measured against
        device = self.params[0].device
        # the norms let through, averaged (bias-corrected by `seen`, as Adam's moments are)
        self.average = torch.zeros((), device=device)
        self.seen = torch.zeros((), device=device)
        self.clipped = torch.zeros((), device=device)  # updates scaled down or zeroed
        optimizer.register_step_pre_hook(self._before_step)

    @torch.no_grad()
    def _before_step(self, optimizer, args, kwargs) -> None:
        grads = [p.grad for p in self.params if p.grad is not None]
        if not grads:
            return
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)).float())
        finite = torch.isfinite(norm)
        mean = self.average / (1 - self.decay**self.seen).clamp_min(1e-12)
        limit = torch.where(self.seen >= self.warmup, self.ratio * mean, math.inf)
        scale = torch.where(finite, (limit / norm).clamp(max=1.0), 0.0)
        torch._foreach_mul_(grads, scale)
        for grad in grads:  # 0 x inf is NaN: a gradient that was not finite becomes zeros
            grad.nan_to_num_(0.0, 0.0, 0.0)
        moved = self.average.lerp(torch.minimum(norm, limit), 1 - self.decay)  # what was let through
        self.average = torch.where(finite, moved, self.average)
        self.seen += finite
        self.clipped += scale < 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"average": self.average, "seen": self.seen, "clipped": self.clipped}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """STATE as state_dict gives it; ValueError for anything else (a checkpoint is a file)."""
        names = tuple(self.state_dict())
        if sorted(state) != sorted(names) or not all(
            v.numel() == 1 and v.is_floating_point() and 0 <= v.item() < math.inf for v in state.values()
        ):
            raise ValueError(f"the update guard's state must be {', '.join(names)}: one number >= 0 each")
        for name in names:
            setattr(self, name, state[name].to(self.average.device, torch.float32).reshape(()))
