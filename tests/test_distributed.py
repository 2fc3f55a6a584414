"""Data-parallel training: torchrun with gloo on 2 CPU processes trains, checkpoints once, resumes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from productgen.distributed import Group, stop, torchrun_command
from productgen.runs import RunFolder, load_generator
from tests.test_train import TINY


def test_every_row_is_on_exactly_one_rank() -> None:
    shares = [Group(rank, 3).share(10).tolist() for rank in range(3)]
    assert shares == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    with pytest.raises(ValueError, match="from 1 to 64"):
        torchrun_command(0, ["train"])


def _average(rank: int, world: int, port: int, out: dict) -> None:
    """Each rank's gradient is its rank + 1; after the hook both hold the mean, and take one step."""
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.manual_seed(rank)  # different starting weights: same_start must replace them with rank 0's
    net = torch.nn.Linear(3, 2)
    net.register_buffer("stat", torch.full((1,), float(rank)))
    group = Group(rank, world)
    group.same_start([net])
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    group.average_gradients_before_steps([opt], [net])
    for p in net.parameters():
        p.grad = torch.full_like(p, float(rank + 1))
    opt.step()
    out[rank] = [p.detach().clone() for p in net.parameters()] + [net.stat.clone()]
    # one rank's wish to stop reaches every rank, and all read the budget the furthest rank has spent
    assert group.largest(0.25 * (rank + 1), rank == 1, torch.device("cpu")) == (0.25 * world, True)
    stop()


def test_gradients_are_averaged_and_ranks_stay_identical() -> None:
    port = 29400 + os.getpid() % 500
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_average, args=(2, port, out), nprocs=2)
        zero, one = out[0], out[1]
    torch.manual_seed(0)
    start = torch.nn.Linear(3, 2)
    assert all(torch.equal(a, b) for a, b in zip(zero, one, strict=True))  # the same weights on both ranks
    assert torch.allclose(zero[0], start.weight - 1.5) and torch.equal(zero[2], torch.zeros(1))


@pytest.mark.slow
@pytest.mark.parametrize("family", ["cgan", "vaegan"])
def test_torchrun_two_gloo_processes_train_and_resume(
    tiny_snapshot: Path, tmp_path: Path, family: str
) -> None:
    run = tmp_path / "run"
    settings = [f"--set={k}={v}" for k, v in {**TINY, "family": json.dumps(family)}.items()]

    def torchrun(*args: str) -> subprocess.CompletedProcess[str]:
        cli = ["train", str(tiny_snapshot), "--out", str(run), "--json", *settings, *args]
        cmd = torchrun_command(2, cli)
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)

    first = torchrun("--max-steps", "4")
    assert first.returncode == 0, first.stderr[-3000:]
    reports = [json.loads(line) for line in first.stdout.splitlines() if line.startswith("{")]
    assert len(reports) == 1 and reports[0]["step"] == 4  # rank 0 alone reports (and writes)
    meta = RunFolder(run).read_run()
    assert meta["processes"] == 2 and meta["step"] == 4
    assert RunFolder(run).checkpoints() == [RunFolder(run).checkpoint(4)]  # written once, by rank 0

    again = torchrun("--max-steps", "6", "--resume")
    assert again.returncode == 0, again.stderr[-3000:]
    assert RunFolder(run).read_run()["step"] == 6
    generator = load_generator(run).generator
    assert all(torch.isfinite(p).all() for p in generator.parameters())
