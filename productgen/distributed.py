"""Data-parallel training over processes started by torchrun (gloo on CPU, NCCL on GPU).

    torchrun --standalone --nproc-per-node 2 -m productgen train SNAPSHOT --out RUN ...

Every rank builds the same networks from the same seed (and takes rank 0's weights and buffers to
be sure), trains on its own slice of the photos (rows rank, rank + world, ...) with its own noise,
and before every optimizer step the gradients are averaged over all ranks: what
DistributedDataParallel does, done at the optimizer rather than by wrapping the networks, because
a GAN step runs the discriminator several times before one backward pass (real, fake, and every
few steps the R1 penalty), which DDP's reducer refuses. Buffers (BatchNorm statistics, spectral
norm's vectors) follow rank 0, as DDP's `broadcast_buffers` does. Rank 0 alone writes checkpoints
and samples; all ranks stop at the same step.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["Group", "current", "start", "stop", "torchrun_command"]


@dataclass(frozen=True)
class Group:
    """This process's place among the training processes."""

    rank: int
    world: int

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def share(self, n: int) -> torch.Tensor:
        """This rank's rows of n: rank, rank + world, ... (every row on exactly one rank)."""
        return torch.arange(self.rank, n, self.world)

    def same_start(self, networks: Iterable[nn.Module]) -> None:
        """Every rank takes rank 0's weights and buffers."""
        for net in networks:
            for tensor in [*net.parameters(), *net.buffers()]:
                dist.broadcast(tensor.data, src=0)

    def average_gradients_before_steps(self, optimizers: Iterable[torch.optim.Optimizer], networks) -> None:
        """Before each optimizer step: its gradients averaged over all ranks, buffers from rank 0."""
        networks = list(networks)

        def before_step(optimizer: torch.optim.Optimizer, args, kwargs) -> None:
            params = [p for group in optimizer.param_groups for p in group["params"]]
            grads = [p.grad for p in params if p.grad is not None]
            if grads:
                flat = torch.cat([g.reshape(-1) for g in grads])
                dist.all_reduce(flat)
                flat /= self.world
                at = 0
                for g in grads:
                    g.copy_(flat[at : at + g.numel()].view_as(g))
                    at += g.numel()
            for net in networks:
                for buffer in net.buffers():
                    dist.broadcast(buffer.data, src=0)

        for optimizer in optimizers:
            optimizer.register_step_pre_hook(before_step)

    def largest(self, value: float, flag: bool, device: torch.device) -> tuple[float, bool]:
        """The largest VALUE over all ranks, and whether FLAG is true on any (to stop together)."""
        both = torch.tensor([value, 1.0 if flag else 0.0], dtype=torch.float64, device=device)
        dist.all_reduce(both, op=dist.ReduceOp.MAX)
        return float(both[0]), bool(both[1])


def current() -> Group | None:
    """The process group torchrun's environment started (see `start`); None in a single process."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return Group(dist.get_rank(), dist.get_world_size())
    return None


def start(environ: Mapping[str, str]) -> bool:
    """Join the process group when torchrun started this process (WORLD_SIZE > 1): NCCL when
    there is a GPU, gloo otherwise. Returns whether it did."""
    world = int(environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1 or (dist.is_available() and dist.is_initialized()):
        return False
    if torch.cuda.is_available():
        torch.cuda.set_device(int(environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")
    return True


def stop(*, together: bool = True) -> None:
    """Leave the process group. together: wait for every rank first; gloo aborts a process
    ("terminate called without an active exception") that tears its group down while a peer is
    still using it. A rank that failed leaves alone: the others may never arrive."""
    if dist.is_available() and dist.is_initialized():
        if together:
            dist.barrier()
        dist.destroy_process_group()


def torchrun_command(processes: int, cli_args: Sequence[str]) -> list[str]:
    """`productgen CLI_ARGS` as `processes` training processes on this machine (torchrun)."""
    if not 1 <= processes <= 64:
        raise ValueError(f"training processes must be from 1 to 64; got {processes}")
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    return [*launch, "-m", "productgen", *cli_args]
