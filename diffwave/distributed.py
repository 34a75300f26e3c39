"""Process-group plumbing for data-parallel training: who am I, how do I join, how do we agree.

Two ways to get several processes, as lmnt and torchrun do it:

* ``diffwave train`` spawns one process per GPU itself (``torch.multiprocessing.spawn``,
  a rendezvous on a free local port);
* ``torchrun … -m diffwave train`` starts them and describes each one in the environment
  (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT``).

Both end in the same :class:`DistContext`. The CPU uses gloo, so tests can run two
processes without a GPU; CUDA uses NCCL.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job. The default is a single process."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def device(self, kind: str) -> torch.device:
        """``cuda`` -> this process's GPU (``cuda:LOCAL_RANK``); ``cpu`` -> the CPU."""
        if kind == "cuda":
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")


def context_from_env(environ: Optional[dict] = None) -> Optional[DistContext]:
    """The context torchrun describes in the environment, or None when not started by torchrun."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env or "RANK" not in env:
        return None
    try:
        world = int(env["WORLD_SIZE"])
        rank = int(env["RANK"])
        local_rank = int(env.get("LOCAL_RANK", rank))
        local_world = int(env.get("LOCAL_WORLD_SIZE", world))
    except ValueError as exc:
        raise ValueError(f"malformed torchrun environment ({exc})") from None
    return DistContext(rank=rank, local_rank=local_rank, world_size=world, local_world_size=local_world)


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now (for spawned ranks)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def join(ctx: DistContext, device_kind: str, init_method: str) -> None:
    """Join the process group (gloo on the CPU, NCCL on GPUs) and pin this process's resources."""
    if device_kind == "cuda":
        torch.cuda.set_device(ctx.local_rank)
    else:
        # Processes on one machine share its cores: without this each would start one thread per core.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // ctx.local_world_size))
    if ctx.distributed and not dist.is_initialized():
        backend = "nccl" if device_kind == "cuda" else "gloo"
        dist.init_process_group(backend, init_method=init_method, rank=ctx.rank, world_size=ctx.world_size)


def leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def mean_over_ranks(value: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """The mean of a scalar over all ranks (every rank gets it); the value itself when single-process."""
    if not ctx.distributed:
        return value
    total = value.detach().clone().float()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total / ctx.world_size


def main_rank_says(flag: bool, ctx: DistContext, device: torch.device) -> bool:
    """Rank 0's ``flag``, on every rank (for decisions such as a time limit that must not differ between ranks)."""
    if not ctx.distributed:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.broadcast(value, src=0)
    return bool(value.item())


def replicas_agree(model: torch.nn.Module, ctx: DistContext) -> bool:
    """True when every rank holds the same parameters (compared through a float64 fingerprint)."""
    if not ctx.distributed:
        return True
    with torch.no_grad():
        fingerprint = torch.stack(
            [torch.stack([p.double().sum(), p.double().abs().sum()]) for p in model.parameters()]
        ).flatten()
    gathered = [torch.empty_like(fingerprint) for _ in range(ctx.world_size)]
    dist.all_gather(gathered, fingerprint)
    return all(torch.equal(gathered[0], other) for other in gathered[1:])


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()
