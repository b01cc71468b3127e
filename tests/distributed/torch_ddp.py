"""rnnscan.rnn under PyTorch DDP and FSDP2: two CPU processes (gloo on 127.0.0.1) against one.

Run by tests/test_distributed.py. The parent process trains the reference on the whole
batch, spawns two ranks (torch.multiprocessing, spawn) that train the same module on half
the batch each, once under DistributedDataParallel and once under FSDP2's fully_shard, and
compares. Every wait is bounded: the process group's timeout, the join's deadline, then the
ranks still alive are killed. Prints one JSON line per check (common.report).
"""

from __future__ import annotations

import datetime
import os
import socket
import sys
import tempfile
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from common import assert_close, fresh_seed, report

import rnnscan

WORLD, B, T, D, U, STEPS, LR = 2, 8, 6, 5, 4, 3, 0.5
DEADLINE_S = 150


class LSTMLike(torch.nn.Module):
    """An LSTM cell written as an rnnscan step: the state is an (h, c) pair, the bias a constant."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(D, 4 * U) * 0.5)
        self.u = torch.nn.Parameter(torch.randn(U, 4 * U) * 0.5)
        self.b = torch.nn.Parameter(torch.randn(4 * U) * 0.3)
        self.h0 = torch.nn.Parameter(torch.randn(U) * 0.3)  # a learned initial state
        self.head = torch.nn.Linear(U, 1)

    def step(self, x_t: torch.Tensor, states: tuple) -> tuple:
        (h, c), bias = states
        i, f, g, o = torch.chunk(x_t @ self.w + h @ self.u + bias, 4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, [(h, c)]

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x`` ``(batch, time, D)``, ``mask`` ``(batch, time)`` -> per-sample losses ``(batch,)``."""
        batch = x.shape[0]
        h0 = self.h0.expand(batch, U)
        last, outputs, [(h, c)] = rnnscan.rnn(
            self.step, x, [(h0, torch.zeros(batch, U))], mask=mask, go_backwards=True, constants=[self.b]
        )
        return self.head(outputs).squeeze(-1).pow(2).mean(1) + (last * c).sum(-1) + torch.tanh(h).sum(-1)


def batches(seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((B, T, D)).astype(np.float32), rng.random((B, T)) > 0.3) for _ in range(STEPS)]


def train(model: torch.nn.Module, data: list, rank: int | None = None) -> list[float]:
    """SGD on the mean per-sample loss; with ``rank``, on that rank's half of every batch."""
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    losses = []
    for x, mask in data:
        if rank is not None:
            part = slice(rank * B // WORLD, (rank + 1) * B // WORLD)
            x, mask = x[part], mask[part]
        # Mean over the local batch: DDP and FSDP average the gradients over the ranks, so
        # with equal halves this is the gradient of the mean over the whole batch.
        loss = model(torch.from_numpy(x), torch.from_numpy(mask)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    return [float(v) for v in losses]


def full_parameters(model: torch.nn.Module) -> dict[str, np.ndarray]:
    out = {}
    for name, p in model.named_parameters():
        p = p.full_tensor() if hasattr(p, "full_tensor") else p  # FSDP2's DTensor shards
        out[name.removeprefix("module.")] = p.detach().numpy().copy()
    return out


def global_losses(losses: list[float]) -> list[float]:
    """The mean of the ranks' losses at every step: the loss over the whole batch."""
    t = torch.tensor(losses)
    dist.all_reduce(t)
    return (t / WORLD).tolist()


def rank_main(rank: int, port: int, seed: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=WORLD,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        data = batches(seed)
        results = {}
        torch.manual_seed(seed)
        ddp = torch.nn.parallel.DistributedDataParallel(LSTMLike())
        losses = train(ddp, data, rank)
        results["ddp"] = {"losses": global_losses(losses), "params": full_parameters(ddp)}
        try:
            from torch.distributed.device_mesh import init_device_mesh
            from torch.distributed.fsdp import fully_shard

            torch.manual_seed(seed)
            model = LSTMLike()
            fully_shard(model, mesh=init_device_mesh("cpu", (WORLD,)))
            losses = train(model, data, rank)
            results["fsdp2"] = {"losses": global_losses(losses), "params": full_parameters(model)}
            results["fsdp2_sharded"] = type(model.w).__name__
        except Exception as error:  # reported as the FSDP2 check's failure, with why
            results["fsdp2_error"] = f"{type(error).__name__}: {error}"
        torch.save(results, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(seed: int, out: str) -> None:
    context = mp.start_processes(
        rank_main, args=(free_port(), seed, out), nprocs=WORLD, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + DEADLINE_S
    try:
        while not context.join(timeout=2):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the ranks did not finish within {DEADLINE_S} s")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
                process.join(5)


def main() -> None:
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    seed = fresh_seed()
    data = batches(seed)
    torch.manual_seed(seed)
    reference = LSTMLike()
    ref_losses = train(reference, data)
    ref_params = full_parameters(reference)

    with tempfile.TemporaryDirectory() as out:
        ranks_ran = {}

        def ranks() -> dict:
            run_ranks(seed, out)
            ranks_ran.update(
                {r: torch.load(os.path.join(out, f"rank{r}.pt"), weights_only=False) for r in range(WORLD)}
            )
            return {"world_size": WORLD}

        report("torch_spawn_gloo_ranks_finish", ranks)

    def compare(engine: str) -> dict:
        if not ranks_ran:
            raise RuntimeError("the ranks did not run")
        if f"{engine}_error" in ranks_ran[0]:
            raise RuntimeError(ranks_ran[0][f"{engine}_error"])
        first = ranks_ran[0][engine]
        assert_close(np.array(first["losses"]), np.array(ref_losses), f"{engine} losses")
        for name, value in ref_params.items():
            assert_close(first["params"][name], value, f"{engine} parameter {name}")
            for r in range(1, WORLD):
                other = ranks_ran[r][engine]["params"][name]
                assert np.array_equal(other, first["params"][name]), f"rank {r}'s {name} differs from rank 0's"
        moved = max(float(np.max(np.abs(v - p))) for v, p in zip(ref_params.values(), initial.values()))
        assert moved > 1e-2, "training should move the parameters"
        facts = {"losses": first["losses"], "reference_losses": ref_losses}
        if engine == "fsdp2":
            facts["parameter_type"] = ranks_ran[0]["fsdp2_sharded"]
            assert facts["parameter_type"] == "DTensor", facts
        return facts

    torch.manual_seed(seed)
    initial = full_parameters(LSTMLike())
    report("ddp_parameters_match_one_process", lambda: compare("ddp"))
    report("fsdp2_parameters_match_one_process", lambda: compare("fsdp2"))


if __name__ == "__main__":
    sys.exit(main())
