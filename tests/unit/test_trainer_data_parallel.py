"""The data-parallel helpers: rank discovery, token-balanced sharding, rank-0-only progress, and DDP
gradients that equal the whole step's gradient with unequal micro-batch counts (two real gloo processes)."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.multiprocessing as mp
from loraplane_trainer.training import distributed
from loraplane_trainer.training.progress import ProgressWriter


def test_context_from_torchrun_env(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.context() is distributed.SINGLE and not distributed.SINGLE.enabled
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.context() is distributed.SINGLE
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("LOCAL_RANK", "2")
    ctx = distributed.context()
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.enabled, ctx.is_main) == (2, 4, 2, True, False)


@pytest.mark.parametrize("lengths", [[], [5], [9, 1, 1, 1, 1, 1, 1, 1, 1, 1], [3, 8, 2, 7, 7, 1, 4], [1] * 11])
def test_shards_are_disjoint_cover_the_step_and_balance_tokens(lengths):
    indices = list(range(100, 100 + len(lengths)))
    shards = [distributed.balanced_shard(distributed.Context(rank=r, world_size=3), indices, lengths)
              for r in range(3)]
    assert sorted(i for s in shards for i in s) == indices
    tokens = [sum(lengths[i - 100] for i in s) for s in shards]
    # Longest-first to the lightest rank: loads differ by at most the longest example.
    assert max(tokens) - min(tokens) <= max(lengths, default=0)
    assert distributed.balanced_shard(distributed.SINGLE, indices, lengths) == indices


def test_progress_of_other_ranks_writes_nothing(tmp_path):
    quiet = ProgressWriter(f"file://{tmp_path}/quiet.json", "r", interval=0, writes=False)
    quiet.update(force=True, step=3)
    assert quiet.progress.step == 3 and not (tmp_path / "quiet.json").exists()
    loud = ProgressWriter(f"file://{tmp_path}/loud.json", "r", interval=0)
    loud.update(force=True, step=3)
    assert (tmp_path / "loud.json").exists()


def _worker(rank: int, world: int, port: int, x: torch.Tensor, y: torch.Tensor, out: dict) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    ctx = distributed.Context(rank=rank, world_size=world)
    torch.manual_seed(rank)  # different initial weights on purpose: broadcast_params must even them out
    model = torch.nn.Linear(3, 1)
    params = list(model.parameters())
    distributed.broadcast_params(ctx, params)
    ddp = distributed.wrap(ctx, model)
    # Rank 0 takes the first half in micro-batches of 1 (several no_sync passes), rank 1 the rest in one;
    # with one example rank 1 has none and joins the reduction with a zero-weighted pass, as the loop does.
    half = (len(x) + 1) // 2
    mine = [[i] for i in range(half)] if rank == 0 else ([list(range(half, len(x)))] if half < len(x) else [])
    (targets,) = distributed.sum_scalars(ctx, float(sum(map(len, mine))))
    work = [(m, world / targets) for m in mine] or [([0], 0.0)]
    for n, (rows, w) in enumerate(work):
        with distributed.gradient_sync(ctx, ddp, last=n == len(work) - 1):
            (((ddp(x[rows]) - y[rows]) ** 2).sum() * w).backward()
    shared = distributed.share(ctx, {"from": rank})
    out[rank] = {"weights": [p.detach().clone() for p in params], "grads": [p.grad.clone() for p in params],
                 "shared": shared, "targets": targets}
    dist.destroy_process_group()


@pytest.mark.parametrize("n", [5, 1])
def test_ddp_gradients_equal_the_whole_steps_gradient(n):
    x, y = torch.randn(n, 3), torch.randn(n, 1)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = mp.Manager().dict()
    mp.spawn(_worker, args=(2, port, x, y, out), nprocs=2, join=True)
    r0, r1 = out[0], out[1]
    assert r0["shared"] == r1["shared"] == {"from": 0}
    assert r0["targets"] == r1["targets"] == n
    model = torch.nn.Linear(3, 1)
    with torch.no_grad():
        for p, w in zip(model.parameters(), r0["weights"], strict=True):
            p.copy_(w)
    (((model(x) - y) ** 2).sum() / n).backward()
    for p, g0, g1, w1 in zip(model.parameters(), r0["grads"], r1["grads"], r1["weights"], strict=True):
        assert torch.equal(w1, p.detach())
        assert torch.equal(g0, g1)
        torch.testing.assert_close(g0, p.grad)
