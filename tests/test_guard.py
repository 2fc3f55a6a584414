"""The update guard: a gradient far above the run's own scale is clipped to it, one that is not
finite is zeroed, and ordinary updates pass untouched."""

from __future__ import annotations

import pytest
import torch

from productgen.guard import GradientGuard


def _guarded(warmup: int = 5) -> tuple[torch.nn.Parameter, torch.optim.SGD, GradientGuard]:
    weight = torch.nn.Parameter(torch.zeros(4))
    optimizer = torch.optim.SGD([weight], lr=1.0)  # the step is the gradient: easy to read
    return weight, optimizer, GradientGuard(optimizer, ratio=4.0, warmup=warmup)


def _step(weight: torch.nn.Parameter, optimizer: torch.optim.SGD, grad: torch.Tensor) -> torch.Tensor:
    before = weight.detach().clone()
    weight.grad = grad.clone()
    optimizer.step()
    return before - weight.detach()


def test_a_spike_is_clipped_to_the_running_scale_and_ordinary_updates_pass() -> None:
    weight, optimizer, guard = _guarded()
    ordinary = torch.tensor([1.0, -1.0, 1.0, 1.0])  # norm 2
    for _ in range(5):
        assert torch.equal(_step(weight, optimizer, ordinary), ordinary)
    assert torch.equal(_step(weight, optimizer, 3 * ordinary), 3 * ordinary)  # under 4x: untouched
    spike = _step(weight, optimizer, 100 * ordinary)
    # the average of what was let through is about (5 x 2 + 6) / 6 (bias-corrected); the spike
    # keeps its direction at 4x that
    mean = (1 - 0.99) * sum(0.99**k * n for k, n in enumerate([6.0, 2, 2, 2, 2, 2])) / (1 - 0.99**6)
    assert torch.linalg.vector_norm(spike).item() == pytest.approx(4 * mean, rel=1e-5)
    assert torch.allclose(spike / spike.norm(), ordinary / ordinary.norm())
    assert guard.clipped.item() == 1
    assert torch.equal(_step(weight, optimizer, ordinary), ordinary)  # the spike did not raise the bar much
    assert guard.seen.item() == 8


def test_a_gradient_that_is_not_finite_is_zeroed_and_not_counted_in_the_scale() -> None:
    weight, optimizer, guard = _guarded(warmup=0)
    _step(weight, optimizer, torch.ones(4))
    average = guard.average.clone()
    for bad in (torch.tensor([1.0, float("nan"), 0, 0]), torch.tensor([float("inf"), 1, 1, 1])):
        assert torch.equal(_step(weight, optimizer, bad), torch.zeros(4))
    assert torch.equal(guard.average, average) and guard.seen.item() == 1 and guard.clipped.item() == 2


def test_nothing_is_clipped_before_the_warm_up_has_seen_the_runs_scale() -> None:
    weight, optimizer, guard = _guarded(warmup=3)
    for scale in (1.0, 1.0, 50.0):  # early gradients fall fast: a big one early is not a spike
        assert torch.equal(_step(weight, optimizer, torch.full((4,), scale)), torch.full((4,), scale))
    assert guard.clipped.item() == 0


def test_the_state_round_trips_and_bad_state_or_a_ratio_not_above_one_is_refused() -> None:
    weight, optimizer, guard = _guarded(warmup=0)
    _step(weight, optimizer, torch.ones(4))
    _, _, fresh = _guarded(warmup=0)
    fresh.load_state_dict({k: v.clone() for k, v in guard.state_dict().items()})
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in guard.state_dict().items())
    for bad in ({"average": torch.tensor(float("nan"))}, {**guard.state_dict(), "seen": torch.tensor(-1.0)}):
        with pytest.raises(ValueError, match="one number >= 0 each"):
            fresh.load_state_dict(bad)
    for ratio in (1.0, 0.5, -4.0, True):
        with pytest.raises(ValueError, match="grad_clip must be above 1"):
            GradientGuard(optimizer, ratio=ratio)  # type: ignore[arg-type]
